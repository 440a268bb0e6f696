"""``hf:MODEL`` — the Hugging Face Inference API or a TGI endpoint via ``huggingface_hub``."""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..errors import JudgeError
from ..heap import import_heavy
from ..secrets import redact
from .base import JudgeRequest, JudgeResponse, with_schema_in_prompt
from .parsing import score_distribution_from_top_logprobs
from .retry import Failure, FormatRejected, call_with_retries, classify_status, gate_for

#: TGI's grammar form, the OpenAI-style json_schema form, then plain text
MODES = ("grammar", "json_schema", "text")
DEFAULT_MAX_TOKENS = 1024  # huggingface_hub's default (100) cuts verdicts short

_mode_memory: dict[tuple[str, str], int] = {}
_memory_lock = threading.Lock()


class HFInferenceJudge:
    """A judge on the HF Inference API (``model`` is a repo id) or a TGI endpoint (``base_url``)."""

    def __init__(
        self, model: str, *, base_url: str | None = None, timeout: float = 60.0, max_retries: int = 4
    ) -> None:
        InferenceClient = import_heavy("huggingface_hub").InferenceClient

        token = os.environ.get("HF_TOKEN") or None
        self.model = model
        self.name = f"hf:{model}"
        self.base_url = base_url
        target = base_url or f"https://router.huggingface.co/{model}"
        self.endpoint = urlsplit(target).netloc or target
        self.max_retries = max_retries
        self._gate = gate_for(target)
        self._key = (target, model)
        # a TGI endpoint speaks its grammar form first; the hosted API the json_schema form
        self._first_mode = 0 if base_url else 1
        if base_url:
            self._client = InferenceClient(base_url=base_url, token=token, timeout=timeout)
        else:
            self._client = InferenceClient(model=model, token=token, timeout=timeout)

    def judge(self, request: JudgeRequest) -> JudgeResponse:
        while True:
            with _memory_lock:
                mode = _mode_memory.get(self._key, self._first_mode)
            try:
                return self._call(request, MODES[mode])
            except FormatRejected as rejected:
                with _memory_lock:
                    if mode + 1 >= len(MODES):
                        raise JudgeError(f"{self.name}: {rejected}", judge=self.name) from None
                    _mode_memory[self._key] = max(_mode_memory.get(self._key, 0), mode + 1)

    def _call(self, request: JudgeRequest, mode: str) -> JudgeResponse:
        schema = request.schema_json()
        kwargs: dict[str, Any] = {
            "temperature": request.sampling.temperature,
            "max_tokens": request.sampling.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if self.base_url:
            kwargs["model"] = self.model
        if request.sampling.top_p is not None:
            kwargs["top_p"] = request.sampling.top_p
        if request.sampling.seed is not None:
            kwargs["seed"] = request.sampling.seed
        if request.score_field:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 5
        messages: list[dict[str, str]] = [dict(m) for m in request.messages]
        if mode == "grammar":
            kwargs["response_format"] = {"type": "json", "value": schema}
        elif mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema.__name__, "schema": schema, "strict": False},
            }
        else:
            messages = with_schema_in_prompt(request.messages, request.schema)
        started = time.perf_counter()
        output = call_with_retries(
            lambda: self._client.chat_completion(messages, **kwargs),
            lambda exc: self._classify(exc, mode),
            gate=self._gate,
            max_retries=self.max_retries,
            judge=self.name,
        )
        latency = time.perf_counter() - started
        try:
            choice = output.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise JudgeError(f"{self.name}: the reply is not a chat completion", judge=self.name) from None
        if not text:
            raise JudgeError(f"{self.name}: empty reply", judge=self.name)
        usage = {}
        if getattr(output, "usage", None) is not None:
            usage = {
                "prompt_tokens": int(output.usage.prompt_tokens or 0),
                "completion_tokens": int(output.usage.completion_tokens or 0),
                "total_tokens": int(output.usage.total_tokens or 0),
            }
        distribution = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if request.score_field and content:
            distribution = score_distribution_from_top_logprobs(
                [t.token for t in content],
                [[(a.token, a.logprob) for a in (t.top_logprobs or [])] or [(t.token, t.logprob)]
                 for t in content],
                request.score_field,
                request.score_values,
            )
        return JudgeResponse(text=text, usage=usage, latency_s=latency, score_distribution=distribution)

    def _classify(self, exc: Exception, mode: str) -> Failure | None:
        from huggingface_hub.errors import InferenceTimeoutError

        if isinstance(exc, InferenceTimeoutError) or "timeout" in type(exc).__name__.lower():
            return Failure(True, "the request timed out")
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status is None:
            if "connection" in type(exc).__name__.lower():
                return Failure(True, f"cannot connect to {self.endpoint}")
            if isinstance(exc, ValueError):  # a body that is not JSON
                return Failure(True, f"malformed reply from the server: {redact(str(exc))[:200]}")
            return None
        return classify_status(
            status, redact(_body_text(response)), mode=mode,
            retry_after=response.headers.get("retry-after"),
            auth_hint="check HF_TOKEN in the environment",
        )


def _body_text(response: Any) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    except Exception:  # noqa: BLE001 - any body at all
        return str(getattr(response, "text", ""))[:300]
