"""``openai:MODEL`` — any OpenAI-compatible server through the official ``openai`` SDK."""

from __future__ import annotations

import json
import os
import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import ConfigError
from ..heap import import_heavy
from ..secrets import redact
from .base import Message
from .chat import ChatCompletionsJudge
from .deadline import openai_http_client
from .retry import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    EndpointGates,
    Failure,
    classify_status,
)


class OpenAIJudge(ChatCompletionsJudge):
    """A judge on an OpenAI-compatible chat-completions endpoint.

    Structured output: ``json_schema``, then ``json_object`` with the schema (vLLM,
    llama.cpp) and in the prompt, then the schema in the prompt only.
    """

    modes = ("json_schema", "json_object", "text")

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        require_key: bool = True,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        gates: EndpointGates | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if not os.environ.get("OPENAI_API_KEY") and base_url is None and require_key:
            raise ConfigError(
                f"judge openai:{model} needs an API key: set the OPENAI_API_KEY environment "
                "variable, or point --llm-base-url at a server that needs none"
            )
        self.base_url = base_url or "https://api.openai.com/v1"
        super().__init__(backend="openai", model=model, url=self.base_url, timeout=timeout,
                         max_retries=max_retries, max_in_flight=max_in_flight, gates=gates)
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._openai: Any = None

    def _sdk(self) -> Any:
        """The SDK client, built on the first real call (a warm-cache run never imports openai)."""
        with self._client_lock:
            if self._client is None:
                openai = import_heavy("openai")
                # local servers (vLLM, llama.cpp, Ollama) ignore the key; the SDK insists on one
                api_key = os.environ.get("OPENAI_API_KEY") or "no-key"
                # one client (one connection pool) per judge; our retries (per-endpoint gate,
                # Retry-After) replace the SDK's; the http client bounds each whole request
                self._openai = openai
                # a query in the base URL (``?api-version=...``, ``?key=...``) is sent with every
                # request: the SDK joins routes onto the path, so it goes in default_query
                parts = urlsplit(self.base_url)
                self._client = openai.OpenAI(
                    api_key=api_key, base_url=urlunsplit(parts._replace(query="")), timeout=self.timeout,
                    max_retries=0, default_query=dict(parse_qsl(parts.query)) or None,
                    http_client=openai_http_client(openai, self.timeout),
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    native_modes = frozenset({"json_schema"})

    def _response_format(self, mode: str, schema: Any) -> dict[str, Any] | None:
        if mode == "json_object":
            from .base import schema_of

            return {"type": "json_object", "schema": schema_of(schema)}
        return super()._response_format(mode, schema)

    def _send(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
        client = self._sdk()
        body = {"model": self.model, "messages": messages, **params}
        # The SDK's documented low-level call for a route (``client.post``): the SDK's auth,
        # headers, timeouts and typed errors, without building response models; the reply
        # comes back as text and is read as plain JSON.
        completion = json.loads(client.post("/chat/completions", body=body, cast_to=str))
        if not isinstance(completion, dict):  # a malformed reply, classified as such
            raise ValueError(f"the reply is not a JSON object: {str(completion)[:200]}")
        return completion

    def _classify(self, exc: Exception, mode: str, logprobs: bool) -> Failure | None:
        openai = self._openai
        if isinstance(exc, openai.APITimeoutError):
            return Failure(True, f"the request timed out (--llm-timeout {self.timeout:g} s)")
        if isinstance(exc, openai.APIConnectionError):
            return self._connection_failure(exc)
        if isinstance(exc, openai.APIStatusError):
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            return classify_status(
                exc.status_code, redact(_error_text(exc)), mode=mode, logprobs=logprobs,
                retry_after=headers.get("retry-after"),
                auth_hint="check the API key in the environment",
            )
        if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
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
