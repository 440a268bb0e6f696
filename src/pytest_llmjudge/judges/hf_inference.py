"""``hf:MODEL`` — the Hugging Face Inference API or a TGI endpoint via ``huggingface_hub``."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..heap import import_heavy
from ..secrets import redact
from .base import Message, schema_of
from .chat import ChatCompletionsJudge
from .deadline import RequestDeadlineExceeded, hf_deadline
from .retry import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    EndpointGates,
    Failure,
    classify_status,
)

DEFAULT_MAX_TOKENS = 1024  # huggingface_hub's default (100) cuts verdicts short


class HFInferenceJudge(ChatCompletionsJudge):
    """A judge on the HF Inference API (``model`` is a repo id) or a TGI endpoint (``base_url``).

    Structured output: TGI's grammar form, the OpenAI-style ``json_schema`` form, then the
    schema in the prompt. A TGI endpoint starts with the grammar, the hosted API with json_schema.
    """

    modes = ("grammar", "json_schema", "text")
    native_modes = frozenset({"grammar", "json_schema"})

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        gates: EndpointGates | None = None,
    ) -> None:
        hub = import_heavy("huggingface_hub")
        token = os.environ.get("HF_TOKEN") or None
        self.base_url = base_url
        target = base_url or f"https://router.huggingface.co/{model}"
        super().__init__(backend="hf", model=model, url=target, timeout=timeout, max_retries=max_retries,
                         max_in_flight=max_in_flight, first_mode=0 if base_url else 1, gates=gates)
        if base_url:
            self._client = hub.InferenceClient(base_url=base_url, token=token, timeout=timeout)
        else:
            self._client = hub.InferenceClient(model=model, token=token, timeout=timeout)

    def _response_format(self, mode: str, schema: Any) -> dict[str, Any] | None:
        if mode == "grammar":
            return {"type": "json", "value": schema_of(schema)}
        return super()._response_format(mode, schema)

    def _send(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(params)
        kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if "top_logprobs" in kwargs:
            kwargs["top_logprobs"] = min(5, kwargs["top_logprobs"])
        if self.base_url:
            kwargs["model"] = self.model
        with hf_deadline(self.timeout):
            output = self._client.chat_completion(messages, **kwargs)
        return _as_dict(output)

    def _classify(self, exc: Exception, mode: str, logprobs: bool) -> Failure | None:
        from huggingface_hub.errors import InferenceTimeoutError

        if isinstance(exc, (InferenceTimeoutError, RequestDeadlineExceeded)) or "timeout" in type(exc).__name__.lower():
            return Failure(True, f"the request timed out (--llm-timeout {self.timeout:g} s)")
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if response is None or status is None:
            if _is_transport_error(exc):
                return self._connection_failure(exc)
            if isinstance(exc, ValueError):  # a body that is not JSON
                return Failure(True, f"malformed reply from the server: {redact(str(exc))[:200]}")
            return None
        return classify_status(
            status, redact(_body_text(response)), mode=mode, logprobs=logprobs,
            retry_after=response.headers.get("retry-after"),
            auth_hint="check HF_TOKEN in the environment",
        )


def _is_transport_error(exc: Exception) -> bool:
    """A connection-level failure of requests (huggingface_hub < 1.0) or httpx (later)."""
    if isinstance(exc, OSError):  # ConnectionError and friends
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "RequestException", "ProtocolError"}) or any(
        word in type(exc).__name__.lower() for word in ("connect", "protocol")
    )


def _as_dict(output: Any) -> dict[str, Any]:
    """huggingface_hub's output dataclasses as plain dicts (they are dict subclasses before 1.0)."""
    if isinstance(output, dict):
        return dict(output)
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.asdict(output)
    raise ValueError(f"the reply is not a chat completion: {type(output).__name__}")


def _body_text(response: Any) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    except Exception:  # noqa: BLE001 - any body at all
        return str(getattr(response, "text", ""))[:300]
