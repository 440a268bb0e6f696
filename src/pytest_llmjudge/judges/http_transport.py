"""A lean keep-alive HTTP/1.1 transport for judges served over plain ``http://``.

Self-hosted judges (vLLM, llama.cpp, Ollama, TGI) usually answer on ``http://`` in a few tens of
milliseconds, so the client's own CPU per request matters. The openai SDK's default transport
(httpcore + h11) spends about 0.3-0.4 ms of CPU per request on connection-pool bookkeeping and
header validation. This transport plugs into the SDK's own httpx client (``transport=``), so the
SDK still builds every request, sets auth and headers, applies timeouts and raises its typed
errors. Only the bytes on the wire are handled here: one request at a time per connection, idle
connections kept for reuse, ``Content-Length``, chunked and read-to-close bodies, and httpx's own
exceptions for timeouts and broken connections (which the SDK turns into ``APITimeoutError`` and
``APIConnectionError``). ``https://`` endpoints and endpoints behind a proxy keep the SDK's
default transport (and a redirect to ``https://`` is handed to httpx's own);
``PYTEST_LLMJUDGE_STOCK_HTTP=1`` turns this one off everywhere.
"""

from __future__ import annotations

import functools
import os
import select
import socket
import threading
import urllib.parse
import urllib.request
from types import ModuleType
from typing import Any

MAX_LINE = 65536
MAX_HEADERS = 256
MAX_IDLE_PER_HOST = 64
STOCK_ENV = "PYTEST_LLMJUDGE_STOCK_HTTP"


class _Disconnected(Exception):
    """The server closed the connection before sending any byte of a response."""


def wanted(url: str) -> bool:
    """True when ``url`` is plain http, no proxy applies to it and the user did not opt out."""
    if os.environ.get(STOCK_ENV, "").strip() not in ("", "0"):
        return False
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


def keepalive_transport(httpx: ModuleType) -> Any:
    """A new transport for the given httpx module (the one the installed openai SDK uses)."""
    return _transport_class(httpx)()


@functools.cache
def _transport_class(httpx: ModuleType) -> type:
    """The transport class, built once per httpx module (it subclasses that module's BaseTransport)."""
    class KeepAliveTransport(httpx.BaseTransport):  # type: ignore[misc, name-defined]
        """HTTP/1.1 over plain sockets with a per-host pool of idle connections."""

        def __init__(self) -> None:
            self._idle: dict[tuple[str, int], list[tuple[socket.socket, Any]]] = {}
            self._lock = threading.Lock()
            self._stock: Any = None  # httpx's own transport, for a redirect to https

        def handle_request(self, request: Any) -> Any:
            url = request.url
            if url.scheme != "http":
                with self._lock:
                    if self._stock is None:
                        self._stock = httpx.HTTPTransport()
                return self._stock.handle_request(request)
            timeouts = request.extensions.get("timeout") or {}
            key = (url.host, url.port or 80)
            method = request.method.encode() if isinstance(request.method, str) else request.method
            head = b"%s %s HTTP/1.1\r\n" % (method, url.raw_path)
            payload = head + b"".join(b"%s: %s\r\n" % pair for pair in request.headers.raw) + b"\r\n" + request.read()
            for attempt in (0, 1):
                connection, reused = self._checkout(key, timeouts.get("connect"), request)
                try:
                    status, reason, headers, body, keep = _exchange(connection, payload, method, timeouts, httpx, request)
                except _Disconnected:
                    _close(connection)
                    if reused and attempt == 0:
                        continue  # an idle connection the server had closed: once more on a new one
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                    request=request) from None
                except BaseException:
                    _close(connection)
                    raise
                if keep:
                    self._checkin(key, connection)
                else:
                    _close(connection)
                return httpx.Response(status, headers=headers, content=body,
                                      extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})
            raise AssertionError("unreachable")  # pragma: no cover

        def _checkout(self, key: tuple[str, int], timeout: float | None, request: Any) -> tuple[Any, bool]:
            while True:
                with self._lock:
                    pool = self._idle.get(key)
                    connection = pool.pop() if pool else None
                if connection is None:
                    break
                if not _readable(connection[0]):
                    return connection, True
                _close(connection)  # idle and readable: closed by the server (or junk)
            try:
                sock = socket.create_connection(key, timeout=timeout)
            except socket.timeout as exc:
                raise httpx.ConnectTimeout(str(exc) or "timed out", request=request) from exc
            except OSError as exc:
                raise httpx.ConnectError(str(exc), request=request) from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return (sock, sock.makefile("rb")), False

        def _checkin(self, key: tuple[str, int], connection: tuple[socket.socket, Any]) -> None:
            with self._lock:
                pool = self._idle.setdefault(key, [])
                if len(pool) < MAX_IDLE_PER_HOST:
                    pool.append(connection)
                    return
            _close(connection)

        def close(self) -> None:
            with self._lock:
                pools, self._idle = list(self._idle.values()), {}
                stock, self._stock = self._stock, None
            if stock is not None:
                stock.close()
            for pool in pools:
                for connection in pool:
                    _close(connection)

    return KeepAliveTransport


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the server closed it (or sent junk)."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _close(connection: tuple[socket.socket, Any]) -> None:
    sock, reader = connection
    try:
        reader.close()
    finally:
        sock.close()


def _exchange(connection: tuple[socket.socket, Any], payload: bytes, method: bytes,
              timeouts: dict[str, Any], httpx: ModuleType, request: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """Send one request and read its whole response: (status, reason, headers, body, keep-alive)."""
    sock, reader = connection
    received = False
    phase = "write"
    try:
        sock.settimeout(timeouts.get("write"))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            raise _Disconnected from None
        phase = "read"
        sock.settimeout(timeouts.get("read"))
        while True:
            line = reader.readline(MAX_LINE + 1)
            if not line:
                if received:
                    raise httpx.RemoteProtocolError("Server disconnected in the middle of a response.", request=request)
                raise _Disconnected
            received = True
            version, status, reason = _status_line(line, httpx, request)
            headers = _headers(reader, httpx, request)
            if not (100 <= status < 200) or status == 101:
                break
        length, chunked, keep = None, False, version == b"HTTP/1.1"
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad Content-Length {value!r}", request=request) from None
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"connection":
                tokens = value.lower()
                keep = b"close" not in tokens and (keep or b"keep-alive" in tokens)
        if method == b"HEAD" or status in (204, 304):
            body = b""
        elif chunked:
            body = _chunked(reader, httpx, request)
        elif length is not None:
            body = reader.read(length)
            if len(body) < length:
                raise httpx.RemoteProtocolError(
                    f"Server disconnected after {len(body)} of {length} body bytes.", request=request)
        else:
            body, keep = reader.read(), False
        return status, reason, headers, body, keep
    except socket.timeout as exc:
        kind = httpx.ReadTimeout if phase == "read" else httpx.WriteTimeout
        raise kind(str(exc) or "timed out", request=request) from exc
    except ConnectionResetError as exc:
        if not received:
            raise _Disconnected from None
        raise httpx.ReadError(str(exc), request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc


def _status_line(line: bytes, httpx: ModuleType, request: Any) -> tuple[bytes, int, bytes]:
    parts = line.rstrip(b"\r\n").split(b" ", 2)
    if len(line) > MAX_LINE or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}", request=request)
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else b""


def _headers(reader: Any, httpx: ModuleType, request: Any) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    while True:
        line = reader.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return headers
        name, colon, value = line.partition(b":")
        if not line or len(line) > MAX_LINE or not colon or len(headers) >= MAX_HEADERS:
            raise httpx.RemoteProtocolError(f"malformed response header: {line[:80]!r}", request=request)
        headers.append((name.strip(), value.strip()))


def _chunked(reader: Any, httpx: ModuleType, request: Any) -> bytes:
    parts = []
    while True:
        line = reader.readline(MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size line {line[:80]!r}", request=request) from None
        if size == 0:
            _headers(reader, httpx, request)  # trailers
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) < size or reader.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise httpx.RemoteProtocolError("Server disconnected in the middle of a chunked body.", request=request)
        parts.append(chunk)
