"""FakeJudge: a judge that calls your function, for tests (ours and yours)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from .base import DEFAULT_SAMPLING, FreeText, JudgeRequest, JudgeResponse, Message, Sampling

Handler = Callable[[JudgeRequest], "str | dict[str, Any] | BaseModel"]


class FakeJudge:
    """A judge whose reply is ``handler(request)``: a JSON string, a dict or a schema instance.

    Example::

        judge = FakeJudge(lambda request: {"reason": "close enough", "score": 4})
        assert_llm_score(answer, expected="Paris", judge=judge)
    """

    def __init__(self, handler: Handler, *, name: str = "fake:handler", latency_s: float = 0.0) -> None:
        self.name = name
        self.endpoint = "in-process"
        self.handler = handler
        self.latency_s = latency_s
        self.calls: list[JudgeRequest] = []
        self._lock = threading.Lock()

    def complete(
        self,
        messages: Sequence[Message],
        *,
        sampling: Sampling = DEFAULT_SAMPLING,
        schema: type[BaseModel] | None = None,
    ) -> JudgeResponse:
        """The handler's reply to ``messages``; for free text (``schema`` None) the request
        carries :class:`FreeText` and a dict or model reply gives its ``text``."""
        request = JudgeRequest(messages=tuple(messages), schema=schema or FreeText, sampling=sampling)
        response = self.judge(request)
        if schema is None and response.text.lstrip().startswith("{"):
            try:
                response.text = FreeText.model_validate_json(response.text).text
            except ValueError:
                pass
        return response

    def judge(self, request: JudgeRequest) -> JudgeResponse:
        with self._lock:
            self.calls.append(request)
        started = time.perf_counter()
        if self.latency_s:
            time.sleep(self.latency_s)
        reply = self.handler(request)
        if isinstance(reply, BaseModel):
            text = reply.model_dump_json()
        elif isinstance(reply, dict):
            text = json.dumps(reply)
        else:
            text = str(reply)
        return JudgeResponse(text=text, latency_s=time.perf_counter() - started)
