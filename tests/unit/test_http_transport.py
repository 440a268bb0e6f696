"""The keep-alive transport for plain-http judges (http_transport.py), under the real openai SDK.

A scripted socket server answers each request with the bytes a test chooses, so keep-alive,
stale connections, chunked and gzip bodies, truncation and garbage are all exercised.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator

import openai
import pytest

from pytest_llmjudge.judges.http_transport import STOCK_ENV, wanted
from pytest_llmjudge.judges.openai_compat import OpenAIJudge, _lean_http_client

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hello"}}]}
BODY = json.dumps(COMPLETION).encode()

Reply = Callable[[int], bytes | None]  # request number -> raw response bytes (None: close without answer)


def ok(body: bytes = BODY, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class ScriptedServer:
    """Counts connections and requests; ``reply(n)`` gives the bytes for the n-th request."""

    def __init__(self, reply: Reply, close_after_reply: bool = False) -> None:
        self.reply = reply
        self.close_after_reply = close_after_reply
        self.connections = 0
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                length = None
                line = reader.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = reader.readline()
                reader.read(length or 0)
                number = self.requests
                self.requests += 1
                answer = self.reply(number)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_reply:
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(reply: Reply, **kwargs: bool) -> ScriptedServer:
        servers.append(ScriptedServer(reply, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client(url: str, timeout: float = 5.0) -> openai.OpenAI:
    http_client = _lean_http_client(openai, url)["http_client"]
    return openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0, timeout=timeout, http_client=http_client)


def ask(sdk: openai.OpenAI) -> str:
    out = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    return str(out.choices[0].message.content)


def test_requests_share_one_kept_alive_connection(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda n: ok())
    sdk = client(server.url)
    assert [ask(sdk) for _ in range(5)] == ["hello"] * 5
    assert (server.connections, server.requests) == (1, 5)


def test_a_connection_the_server_closed_is_replaced(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda n: ok(), close_after_reply=True)  # closes without saying so
    sdk = client(server.url)
    assert [ask(sdk) for _ in range(3)] == ["hello"] * 3
    assert server.connections == 3


def test_a_reused_connection_dropped_without_an_answer_is_retried_once(serve: Callable[..., ScriptedServer]) -> None:
    # the keep-alive race: the server closes an idle connection just as a request goes out
    server = serve(lambda n: None if n == 1 else ok())
    sdk = client(server.url)
    assert [ask(sdk) for _ in range(2)] == ["hello"] * 2
    assert (server.connections, server.requests) == (2, 3)


def test_connection_close_is_honoured(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda n: ok(BODY, b"Connection: close"), close_after_reply=True)
    sdk = client(server.url)
    assert [ask(sdk) for _ in range(2)] == ["hello"] * 2
    assert server.connections == 2


def test_chunked_and_gzip_bodies(serve: Callable[..., ScriptedServer]) -> None:
    packed = gzip.compress(BODY)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (packed[:10], packed[10:])) + b"0\r\n\r\n"
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    server = serve(lambda n: chunked)
    sdk = client(server.url)
    assert [ask(sdk) for _ in range(2)] == ["hello"] * 2
    assert server.connections == 1


def test_http_errors_reach_the_sdk_as_status_errors(serve: Callable[..., ScriptedServer]) -> None:
    body = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode()
    server = serve(lambda n: b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with pytest.raises(openai.RateLimitError, match="slow down") as caught:
        ask(client(server.url))
    assert caught.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"id\": ",  # truncated body
    b"garbage\r\n\r\n",  # not HTTP
    None,  # closed without a byte, on a fresh connection
], ids=["truncated", "garbage", "no-answer"])
def test_broken_responses_are_connection_errors(serve: Callable[..., ScriptedServer], answer: bytes | None) -> None:
    server = serve(lambda n: answer, close_after_reply=True)
    with pytest.raises(openai.APIConnectionError):
        ask(client(server.url))


def test_a_silent_server_is_a_timeout(serve: Callable[..., ScriptedServer]) -> None:
    hold = threading.Event()
    server = serve(lambda n: hold.wait(5) and None)
    try:
        with pytest.raises(openai.APITimeoutError):
            ask(client(server.url, timeout=0.3))
    finally:
        hold.set()


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(openai.APIConnectionError):
        ask(client(f"http://127.0.0.1:{port}/v1"))


def test_a_redirect_to_https_goes_through_the_stock_transport(serve: Callable[..., ScriptedServer]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # nothing listens there: the stock transport fails to connect
    server = serve(lambda n: b"HTTP/1.1 307 Temporary Redirect\r\nLocation: https://127.0.0.1:%d/v1/chat/completions\r\n"
                   b"Content-Length: 0\r\n\r\n" % port)
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(client(server.url))
    cause = caught.value.__cause__
    assert type(cause).__name__ == "ConnectError" and cause.request.url.scheme == "https"  # followed, not refused


def test_which_endpoints_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", STOCK_ENV):
        monkeypatch.delenv(name, raising=False)
    assert wanted("http://127.0.0.1:8000/v1")
    assert not wanted("https://api.openai.com/v1")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not wanted("http://judge.internal:8000/v1")  # the SDK's transport applies the proxy
    monkeypatch.setenv("NO_PROXY", "judge.internal")
    assert wanted("http://judge.internal:8000/v1")
    monkeypatch.setenv(STOCK_ENV, "1")
    assert not wanted("http://judge.internal:8000/v1")


def test_the_openai_judge_uses_it_for_plain_http_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STOCK_ENV, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    local = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1")._sdk()
    remote = OpenAIJudge("m", base_url="https://example.invalid/v1")._sdk()
    assert type(local._client._transport).__name__ == "KeepAliveTransport"
    assert type(remote._client._transport).__name__ == "HTTPTransport"
