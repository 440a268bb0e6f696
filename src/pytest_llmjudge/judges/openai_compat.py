"""``openai:MODEL`` — any OpenAI-compatible server through the official ``openai`` SDK."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, JudgeError
from ..heap import import_heavy
from ..secrets import redact
from .base import JudgeRequest, JudgeResponse, with_schema_in_prompt
from .http_transport import keepalive_transport, wanted
from .parsing import score_distribution_from_top_logprobs
from .retry import Failure, FormatRejected, call_with_retries, classify_status, gate_for

#: structured-output modes, strictest first; a server that rejects one gets the next
MODES = ("json_schema", "json_object", "text")

# what worked per (endpoint, model), remembered for the rest of the run
_mode_memory: dict[tuple[str, str], int] = {}
_logprobs_off: set[tuple[str, str]] = set()
_memory_lock = threading.Lock()


class OpenAIJudge:
    """A judge on an OpenAI-compatible chat-completions endpoint."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        require_key: bool = True,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if not os.environ.get("OPENAI_API_KEY") and base_url is None and require_key:
            raise ConfigError(
                f"judge openai:{model} needs an API key: set the OPENAI_API_KEY environment "
                "variable, or point --llm-base-url at a server that needs none"
            )
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = base_url or "https://api.openai.com/v1"
        self.endpoint = urlsplit(self.base_url).netloc or self.base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self._gate = gate_for(self.base_url)
        self._key = (self.base_url, model)
        self._client_lock = threading.Lock()
        self._client: Any = None

    def _sdk(self) -> Any:
        """The SDK client, built on the first real call (a warm-cache run never imports openai)."""
        with self._client_lock:
            if self._client is None:
                openai = import_heavy("openai")
                # local servers (vLLM, llama.cpp, Ollama) ignore the key; the SDK insists on one
                api_key = os.environ.get("OPENAI_API_KEY") or "no-key"
                # one client (one connection pool) per judge; our own retries (shared budget,
                # Retry-After) replace the SDK's
                self._openai = openai
                self._client = openai.OpenAI(
                    api_key=api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0,
                    **_lean_http_client(openai, self.base_url),
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def judge(self, request: JudgeRequest) -> JudgeResponse:
        while True:
            with _memory_lock:
                mode = _mode_memory.get(self._key, 0)
                logprobs = bool(request.score_field) and self._key not in _logprobs_off
            try:
                return self._call(request, MODES[mode], logprobs)
            except FormatRejected as rejected:
                with _memory_lock:
                    if logprobs and "logprob" in str(rejected).lower():
                        _logprobs_off.add(self._key)
                    elif mode + 1 < len(MODES):
                        _mode_memory[self._key] = max(_mode_memory.get(self._key, 0), mode + 1)
                    else:
                        raise JudgeError(f"{self.name}: {rejected}", judge=self.name) from None

    def _call(self, request: JudgeRequest, mode: str, logprobs: bool) -> JudgeResponse:
        body: dict[str, Any] = {"model": self.model, "temperature": request.sampling.temperature}
        if request.sampling.top_p is not None:
            body["top_p"] = request.sampling.top_p
        if request.sampling.max_tokens is not None:
            body["max_tokens"] = request.sampling.max_tokens
        if request.sampling.seed is not None:
            body["seed"] = request.sampling.seed
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 10
        schema = request.schema_json()
        messages: list[dict[str, str]] = [dict(m) for m in request.messages]
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema.__name__, "schema": schema, "strict": False},
            }
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
            messages = with_schema_in_prompt(request.messages, request.schema)
        else:
            messages = with_schema_in_prompt(request.messages, request.schema)
        body["messages"] = messages
        client = self._sdk()

        def send() -> Any:
            # The SDK's documented low-level call for the chat-completions route: it keeps the
            # SDK's auth, headers, timeouts and typed errors, but skips walking every message
            # through the request transformer and building response models (most of the SDK's
            # CPU per request). The reply comes back as text and is read as plain JSON.
            return json.loads(client.post("/chat/completions", body=body, cast_to=str))

        started = time.perf_counter()
        completion = call_with_retries(
            send,
            lambda exc: self._classify(exc, mode, logprobs),
            gate=self._gate,
            max_retries=self.max_retries,
            judge=self.name,
        )
        latency = time.perf_counter() - started
        return self._response(completion, request, latency)

    def _response(self, completion: Any, request: JudgeRequest, latency: float) -> JudgeResponse:
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
                f"{self.name}: empty reply" + (f" (refusal: {refusal})" if refusal else ""),
                judge=self.name,
            )
        usage: dict[str, int] = {}
        if isinstance(completion.get("usage"), dict):
            usage = {
                key: int(completion["usage"].get(key) or 0)
                for key in ("prompt_tokens", "completion_tokens", "total_tokens")
            }
        distribution = None
        content_logprobs = (choice.get("logprobs") or {}).get("content")
        if request.score_field and content_logprobs:
            distribution = score_distribution_from_top_logprobs(
                [t["token"] for t in content_logprobs],
                [[(a["token"], a["logprob"]) for a in (t.get("top_logprobs") or [])]
                 or [(t["token"], t["logprob"])] for t in content_logprobs],
                request.score_field,
                request.score_values,
            )
        if choice.get("finish_reason") == "length":
            text += "\n[truncated: the judge hit its token limit]"
        return JudgeResponse(text=text, usage=usage, latency_s=latency, score_distribution=distribution)

    def _classify(self, exc: Exception, mode: str, logprobs: bool) -> Failure | None:
        openai = self._openai
        if isinstance(exc, openai.APITimeoutError):
            return Failure(True, "the request timed out")
        if isinstance(exc, openai.APIConnectionError):
            return Failure(True, f"cannot connect to {self.base_url}")
        if isinstance(exc, openai.APIStatusError):
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            return classify_status(
                exc.status_code, redact(_error_text(exc)), mode=mode, logprobs=logprobs,
                retry_after=headers.get("retry-after"),
                auth_hint="check the API key in the environment",
            )
        if isinstance(exc, openai.APIResponseValidationError) or isinstance(exc, ValueError):
            return Failure(True, f"malformed reply from the server: {redact(str(exc))[:200]}")
        return None


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(getattr(exc, "message", "") or exc)[:300]


def _lean_http_client(openai: Any, base_url: str) -> dict[str, Any]:
    """``{"http_client": ...}`` with the keep-alive transport for a plain-http endpoint, else ``{}``."""
    default_client = getattr(openai, "DefaultHttpxClient", None)
    if default_client is None or not wanted(base_url):
        return {}
    httpx_client = next((c for c in default_client.__mro__ if not c.__module__.startswith("openai")), None)
    httpx = sys.modules.get(httpx_client.__module__.partition(".")[0]) if httpx_client else None
    if httpx is None or not hasattr(httpx, "BaseTransport"):
        return {}
    return {"http_client": default_client(transport=keepalive_transport(httpx))}
