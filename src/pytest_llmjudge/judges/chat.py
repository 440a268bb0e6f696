"""The chat-completions logic shared by the ``openai:`` and ``hf:`` judges.

A subclass says how to send one request (:meth:`ChatCompletionsJudge._send`), which
structured-output modes its server may speak (``modes``, strictest first, ``"text"`` last:
the schema in the prompt) and how to classify its client's exceptions. This class builds the
requests, walks down the modes when a server refuses one (remembering, per judge object, what
worked and whether logprobs are accepted), retries through the endpoint's
:class:`~pytest_llmjudge.judges.retry.EndpointGate`, and reads the completion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ..errors import JudgeError
from ..secrets import redact, safe_url
from .base import (
    DEFAULT_SAMPLING,
    JudgeRequest,
    JudgeResponse,
    Message,
    Sampling,
    schema_of,
    with_schema_in_prompt,
)
from .deadline import MID_RESPONSE
from .parsing import score_distribution_from_top_logprobs
from .retry import (
    DEFAULT_MAX_IN_FLIGHT,
    EndpointGates,
    Failure,
    FormatRejected,
    call_with_retries,
)

TOP_LOGPROBS = 10


class ChatCompletionsJudge:
    """A judge on a chat-completions endpoint; subclasses provide the client."""

    #: structured-output modes, strictest first; "text" (schema in the prompt) must be last
    modes: tuple[str, ...] = ("json_schema", "text")

    def __init__(
        self,
        *,
        backend: str,
        model: str,
        url: str,
        timeout: float,
        max_retries: int,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        first_mode: int = 0,
        gates: EndpointGates | None = None,
    ) -> None:
        self.model = model
        self.name = f"{backend}:{model}"
        #: the URL requests go to, credentials removed (what messages show)
        self.display_url = safe_url(url) or url
        #: host[:port], part of the cache key: never the userinfo
        self.endpoint = _host(self.display_url)
        self.timeout = timeout
        self.max_retries = max_retries
        # the run's gates (shared by its judges on one endpoint), else this judge's own
        self.gate = (gates or EndpointGates()).gate_for(self.display_url, max_in_flight)
        self._lock = threading.Lock()
        self._mode = first_mode
        self._logprobs = True

    # -- public API
    def judge(self, request: JudgeRequest) -> JudgeResponse:
        response = self._structured(request.messages, request.sampling, request.schema,
                                    request.score_field, request.score_values)
        if response.finish_reason == "length":
            response.text += "\n[truncated: the judge hit its token limit]"
        return response

    def complete(
        self,
        messages: Sequence[Message],
        *,
        sampling: Sampling = DEFAULT_SAMPLING,
        schema: type[BaseModel] | None = None,
    ) -> JudgeResponse:
        """A chat completion: free text when ``schema`` is None, else structured (with fallbacks)."""
        if schema is None:
            return self._chat(tuple(messages), sampling, "text", None, None, ())
        return self._structured(tuple(messages), sampling, schema, None, ())

    def close(self) -> None:
        """Release the client's connections (subclasses that hold one override this)."""

    # -- the structured-output ladder, remembered per judge object
    def _structured(
        self, messages: tuple[Message, ...], sampling: Sampling, schema: type[BaseModel],
        score_field: str | None, score_values: tuple[int, ...],
    ) -> JudgeResponse:
        while True:
            with self._lock:
                mode, logprobs = self._mode, self._logprobs and bool(score_field)
            try:
                return self._chat(messages, sampling, self.modes[mode], schema,
                                  score_field if logprobs else None, score_values)
            except FormatRejected as rejected:
                with self._lock:
                    if logprobs and "logprob" in str(rejected).lower():
                        self._logprobs = False
                    elif mode + 1 < len(self.modes):
                        self._mode = max(self._mode, mode + 1)
                    else:
                        raise JudgeError(f"{self.name}: {rejected}", judge=self.name) from None

    def _chat(
        self, messages: tuple[Message, ...], sampling: Sampling, mode: str,
        schema: type[BaseModel] | None, score_field: str | None, score_values: tuple[int, ...],
    ) -> JudgeResponse:
        params: dict[str, Any] = {"temperature": sampling.temperature}
        if sampling.top_p is not None:
            params["top_p"] = sampling.top_p
        if sampling.max_tokens is not None:
            params["max_tokens"] = sampling.max_tokens
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        if score_field:
            params["logprobs"] = True
            params["top_logprobs"] = TOP_LOGPROBS
        sent: list[Message] = [dict(m) for m in messages]
        if schema is not None:
            response_format = self._response_format(mode, schema)
            if response_format is not None:
                params["response_format"] = response_format
            if mode not in self.native_modes:
                sent = with_schema_in_prompt(messages, schema)
        started = time.perf_counter()
        completion = call_with_retries(
            lambda: self._send(sent, params),
            # free text: a refused request is an error, not a response-format fallback
            lambda exc: self._classify(exc, mode if schema is not None else "text", bool(score_field)),
            gate=self.gate, max_retries=self.max_retries, judge=self.name,
        )
        return self._response(completion, score_field, score_values, time.perf_counter() - started)

    #: modes whose response_format constrains the reply without the schema in the prompt
    native_modes: frozenset[str] = frozenset({"json_schema"})

    def _response_format(self, mode: str, schema: type[BaseModel]) -> dict[str, Any] | None:
        if mode == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": schema.__name__, "schema": schema_of(schema), "strict": False}}
        return None

    # -- backend parts
    def _send(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
        """One request; the completion as a JSON-like dict."""
        raise NotImplementedError

    def _classify(self, exc: Exception, mode: str, logprobs: bool) -> Failure | None:
        raise NotImplementedError

    # -- reading a completion
    def _response(
        self, completion: Any, score_field: str | None, score_values: tuple[int, ...], latency: float,
    ) -> JudgeResponse:
        try:
            choice = completion["choices"][0]
            message = choice["message"]
            text = message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise JudgeError(
                f"{self.name}: the server's reply is not a chat completion: {redact(str(completion))[:200]}",
                judge=self.name,
            ) from None
        if not text:
            refusal = message.get("refusal")
            raise JudgeError(
                f"{self.name}: empty reply" + (f" (refusal: {refusal})" if refusal else ""), judge=self.name,
            )
        usage: dict[str, int] = {}
        if isinstance(completion.get("usage"), dict):
            usage = {key: int(completion["usage"].get(key) or 0)
                     for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
        distribution = None
        content_logprobs = (choice.get("logprobs") or {}).get("content")
        if score_field and content_logprobs:
            distribution = score_distribution_from_top_logprobs(
                [t["token"] for t in content_logprobs],
                [[(a["token"], a["logprob"]) for a in (t.get("top_logprobs") or [])]
                 or [(t["token"], t["logprob"])] for t in content_logprobs],
                score_field,
                score_values,
            )
        finish = choice.get("finish_reason")
        return JudgeResponse(text=text, usage=usage, latency_s=latency, score_distribution=distribution,
                             finish_reason=finish)

    def _connection_failure(self, exc: BaseException) -> Failure:
        """A transport failure, named for what happened (never with the URL's credentials)."""
        text = " ".join(redact(str(e)) for e in _chain(exc)).lower()
        if "mid-response" in text:
            detail = next(redact(str(e)) for e in _chain(exc) if "mid-response" in str(e))
            return Failure(True, f"{_strip_wrapping(detail)} from {self.display_url}")
        if any(word in text for word in ("without sending a response", "without response",
                                         "server disconnected", "connection aborted")):
            return Failure(True, f"{self.display_url} closed the connection without a response")
        if any(word in text for word in ("incompleteread", "peer closed", "connection broken")):
            return Failure(True, f"connection to {self.display_url} closed mid-response")
        return Failure(True, f"cannot connect to {self.display_url}")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _strip_wrapping(text: str) -> str:
    start = text.find(MID_RESPONSE.split("{")[0])
    end = text.find("bytes", start)
    return text[start:end + len("bytes")] if start >= 0 and end >= 0 else text


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
