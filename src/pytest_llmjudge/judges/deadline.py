"""One deadline for a whole HTTP request, and what a broken response is called.

HTTP clients time each phase (connect, each read); a server that drips one byte every 50 ms
never trips a read timeout. Here the response body is read through a wrapper that checks a
deadline (``--llm-timeout`` from the start of the request) between the chunks the socket
delivers, and counts bytes so a connection closed mid-body says how much arrived:

* ``openai`` — :func:`openai_http_client` gives the SDK (through its public ``http_client``
  argument) its own ``DefaultHttpxClient`` over a :class:`httpx.BaseTransport` wrapper; the
  SDK maps the ``httpx.ReadTimeout`` it raises to ``APITimeoutError``.
* ``huggingface_hub`` — :func:`hf_deadline` installs (once per session) a response hook on the
  session its public ``get_session()`` returns (requests before 1.0, httpx after), active only
  inside ``with hf_deadline(...)`` in the calling thread.

Per-phase timeouts stay at the budget, so a server that sends nothing at all is cut by them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

#: the wording of a body cut short, shared by both clients
MID_RESPONSE = "connection closed mid-response after {got} of {expected} bytes"


def _expected(headers: Any) -> str:
    length = headers.get("content-length") if headers is not None else None
    return str(length) if length else "an unknown number of"


def sdk_httpx(openai: ModuleType) -> ModuleType:
    """The httpx package the installed openai SDK is built on (``httpx2`` since openai 3)."""
    import importlib

    return importlib.import_module("httpx2" if hasattr(openai, "DefaultHttpx2Client") else "httpx")


def openai_http_client(openai: ModuleType, budget_s: float) -> Any:
    """The SDK's default httpx client (its limits, its defaults) with a whole-request deadline."""
    httpx = sdk_httpx(openai)
    limits = getattr(openai, "DEFAULT_CONNECTION_LIMITS", None) or httpx.Limits()
    inner = httpx.HTTPTransport(limits=limits)
    return openai.DefaultHttpxClient(transport=_deadline_transport(httpx)(inner, budget_s))


@functools.cache
def _deadline_stream(httpx: ModuleType) -> type:
    class DeadlineStream(httpx.SyncByteStream):  # type: ignore[name-defined]
        def __init__(self, inner: Any, request: Any, headers: Any, deadline: float, budget: float) -> None:
            self._inner, self._request, self._headers = inner, request, headers
            self._deadline, self._budget = deadline, budget

        def __iter__(self) -> Iterator[bytes]:
            got = 0
            try:
                for chunk in self._inner:
                    got += len(chunk)
                    if time.monotonic() > self._deadline:
                        raise httpx.ReadTimeout(
                            f"the response took longer than {self._budget:g} s in all", request=self._request
                        )
                    yield chunk
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                message = MID_RESPONSE.format(got=got, expected=_expected(self._headers))
                raise httpx.RemoteProtocolError(message, request=self._request) from exc

        def close(self) -> None:
            self._inner.close()

    return DeadlineStream


@functools.cache
def _deadline_transport(httpx: ModuleType) -> type:
    DeadlineStream = _deadline_stream(httpx)

    class DeadlineTransport(httpx.BaseTransport):  # type: ignore[name-defined]
        """Wraps a transport: the response body must arrive within ``budget_s`` of the request."""

        def __init__(self, inner: Any, budget_s: float) -> None:
            self._inner, self._budget = inner, budget_s

        def handle_request(self, request: Any) -> Any:
            deadline = time.monotonic() + self._budget
            response = self._inner.handle_request(request)
            stream = DeadlineStream(response.stream, request, response.headers, deadline, self._budget)
            return httpx.Response(
                status_code=response.status_code, headers=response.headers, stream=stream,
                extensions=response.extensions,
            )

        def close(self) -> None:
            self._inner.close()

    return DeadlineTransport


# -- huggingface_hub (requests sessions before 1.0) -----------------------------------
class RequestDeadlineExceeded(TimeoutError):
    """The whole request outlived its budget (huggingface_hub turns a TimeoutError into its own)."""


_local = threading.local()
_hooked_lock = threading.Lock()


@contextlib.contextmanager
def hf_deadline(budget_s: float) -> Iterator[None]:
    """Bound huggingface_hub requests made in this thread inside the block by ``budget_s``."""
    session = _hf_session()
    if session is not None:
        _install_hook(session)
    _local.deadline = (time.monotonic() + budget_s, budget_s)
    try:
        yield
    finally:
        _local.deadline = None


def _hf_session() -> Any:
    try:
        from huggingface_hub import get_session
    except ImportError:  # pragma: no cover - every supported version has it
        return None
    return get_session()


def _install_hook(session: Any) -> None:
    """A response hook that runs before the body is read: ``requests.Session.hooks``
    (huggingface_hub < 1.0, one session per thread) or ``httpx.Client.event_hooks`` (later,
    one shared client). Another kind of session keeps its per-phase timeouts only."""
    with _hooked_lock:
        hooks = getattr(session, "hooks", None)
        if isinstance(hooks, dict) and isinstance(hooks.get("response"), list):
            if _requests_hook not in hooks["response"]:
                hooks["response"].append(_requests_hook)
            return
        event_hooks = getattr(session, "event_hooks", None)
        if isinstance(event_hooks, dict) and _httpx_hook not in event_hooks.get("response", []):
            event_hooks = {name: list(fns) for name, fns in event_hooks.items()}
            event_hooks.setdefault("response", []).append(_httpx_hook)
            session.event_hooks = event_hooks


def _requests_hook(response: Any, *args: Any, **kwargs: Any) -> Any:
    active = getattr(_local, "deadline", None)
    if active is not None and hasattr(response.raw, "read1"):
        response.raw = _DeadlineRaw(response.raw, *active)
    return response


def _httpx_hook(response: Any) -> None:
    active = getattr(_local, "deadline", None)
    if active is None:
        return
    import sys

    httpx = sys.modules[type(response).__module__.partition(".")[0]]
    stream = _deadline_stream(httpx)
    response.stream = stream(response.stream, response.request, response.headers, *active)


class _DeadlineRaw:
    """A urllib3 response whose ``stream()`` stops at a deadline and counts what arrived."""

    def __init__(self, raw: Any, deadline: float, budget: float) -> None:
        self._raw, self._deadline, self._budget = raw, deadline, budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        from urllib3.exceptions import ProtocolError

        while True:
            try:
                data = self._raw.read1(amt, decode_content=decode_content)
            except ProtocolError as exc:
                message = MID_RESPONSE.format(got=self._raw.tell(), expected=_expected(self._raw.headers))
                raise ProtocolError(message) from exc
            if time.monotonic() > self._deadline:
                self._raw.close()
                raise RequestDeadlineExceeded(f"the response took longer than {self._budget:g} s in all")
            if not data:
                return
            yield data
