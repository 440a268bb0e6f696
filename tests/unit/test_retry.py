"""Retries: backoff, Retry-After, bounded attempts, the shared per-endpoint gate and budget."""

from __future__ import annotations

import threading
import time

import pytest

from pytest_llmjudge.errors import JudgeError
from pytest_llmjudge.evaluation import build_request
from pytest_llmjudge.judges import retry
from pytest_llmjudge.judges.openai_compat import OpenAIJudge
from pytest_llmjudge.judges.retry import (
    MAX_DELAY_S,
    Failure,
    RetryGate,
    backoff_delay,
    call_with_retries,
    gate_for,
)
from pytest_llmjudge.metrics import get_metric
from pytest_llmjudge.metrics.base import MetricInputs
from pytest_llmjudge.testing.fake_server import FakeJudgeServer


class Boom(Exception):
    pass


def failing(times: int, *, retryable: bool = True, retry_after: float | None = None):
    """fn, classify and a call log: fn raises Boom ``times`` times, then returns "ok"."""
    calls: list[float] = []

    def fn() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise Boom(f"failure {len(calls)}")
        return "ok"

    def classify(exc: Exception) -> Failure | None:
        if isinstance(exc, Boom):
            return Failure(retryable, f"boom: {exc}", retry_after)
        return None

    return fn, classify, calls


def test_success_after_retries() -> None:
    fn, classify, calls = failing(2)
    slept: list[float] = []
    assert call_with_retries(fn, classify, gate=RetryGate(), max_retries=4, judge="j", sleep=slept.append) == "ok"
    assert len(calls) == 3 and len(slept) == 2


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_attempts_are_bounded(max_retries: int) -> None:
    fn, classify, calls = failing(100)
    with pytest.raises(JudgeError) as info:
        call_with_retries(fn, classify, gate=RetryGate(), max_retries=max_retries, judge="openai:m",
                          sleep=lambda s: None)
    assert len(calls) == max_retries + 1
    message = str(info.value)
    assert message.startswith("openai:m: boom: failure")
    assert (f"after {max_retries + 1} attempts" in message) == (max_retries > 0)
    assert info.value.judge == "openai:m"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no SDK error chained


def test_non_retryable_fails_at_once() -> None:
    fn, classify, calls = failing(100, retryable=False)
    with pytest.raises(JudgeError, match="boom: failure 1$"):
        call_with_retries(fn, classify, gate=RetryGate(), max_retries=4, judge="j", sleep=lambda s: None)
    assert len(calls) == 1


def test_foreign_exceptions_propagate_unchanged() -> None:
    def fn() -> None:
        raise KeyError("not ours")

    with pytest.raises(KeyError):
        call_with_retries(fn, lambda exc: None, gate=RetryGate(), max_retries=4, judge="j")


def test_backoff_delay() -> None:
    assert backoff_delay(0, 2.5) == 2.5  # Retry-After wins
    assert backoff_delay(3, 0.0) == 0.0
    assert backoff_delay(0, -4) == 0.0
    assert backoff_delay(0, 10_000) == MAX_DELAY_S
    for attempt in range(8):
        cap = min(MAX_DELAY_S, retry.BASE_DELAY_S * 2**attempt)
        delays = [backoff_delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_retry_after_pauses_the_gate_instead_of_sleeping() -> None:
    gate = RetryGate()
    fn, classify, calls = failing(1, retry_after=0.05)
    slept: list[float] = []
    assert call_with_retries(fn, classify, gate=gate, max_retries=2, judge="j", sleep=slept.append) == "ok"
    assert slept == []  # the pause is the gate's, so every caller honours it
    assert calls[1] >= gate._paused_until


def test_a_rate_limit_pauses_every_caller_of_the_endpoint() -> None:
    paused = threading.Event()

    class Gate(RetryGate):
        def pause(self, seconds: float) -> None:
            super().pause(seconds)
            paused.set()

    gate = Gate()
    sent: dict[str, float] = {}

    def first() -> str:
        if "a" not in sent:
            sent["a"] = time.monotonic()
            raise Boom("429")
        return "a-ok"

    def classify(exc: Exception) -> Failure:
        return Failure(True, "rate limited", retry_after=0.2)

    def second() -> str:
        sent["b"] = time.monotonic()
        return "b-ok"

    results: dict[str, str] = {}
    a = threading.Thread(target=lambda: results.update(a=call_with_retries(first, classify, gate=gate,
                                                                           max_retries=2, judge="j")))
    a.start()
    assert paused.wait(10)
    paused_until = gate._paused_until
    # a caller that had nothing to do with the 429 still waits for the pause to end
    results["b"] = call_with_retries(second, classify, gate=gate, max_retries=2, judge="j")
    a.join(10)
    assert results == {"a": "a-ok", "b": "b-ok"}
    assert sent["b"] >= paused_until > sent["a"]


def test_retry_budget_is_shared_and_bounded() -> None:
    gate = RetryGate(budget=3)
    for _ in range(3):
        fn, classify, _calls = failing(1)
        call_with_retries(fn, classify, gate=gate, max_retries=5, judge="j", sleep=lambda s: None)
    fn, classify, calls = failing(1)
    with pytest.raises(JudgeError, match="retry budget is exhausted"):
        call_with_retries(fn, classify, gate=gate, max_retries=5, judge="j", sleep=lambda s: None)
    assert len(calls) == 1
    for _ in range(10):  # successes earn it back, a tenth at a time
        gate.earn()
    assert gate.spend() and not gate.spend()


def test_gate_for_is_one_gate_per_endpoint() -> None:
    assert gate_for("http://a/v1") is gate_for("http://a/v1")
    assert gate_for("http://a/v1") is not gate_for("http://b/v1")


# -- against the fake server with the real openai client ---------------------------
def request():
    metric = get_metric("correctness")
    return build_request(metric, MetricInputs(output="Paris.", input="Capital?", expected="Paris."))


def test_429_storm_backs_everyone_off_and_everyone_succeeds() -> None:
    with FakeJudgeServer(latency=0.01) as server:
        judge = OpenAIJudge("fake", base_url=server.url, max_retries=4, timeout=10)
        server.fail_next(429, 8, retry_after=0.05)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                judge.judge(request())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert server.request_count == 16  # each 429 cost exactly one more request
        judge.close()


def test_max_retries_against_the_server() -> None:
    with FakeJudgeServer() as server:
        server.fail_next(503, 50)
        judge = OpenAIJudge("fake", base_url=server.url, max_retries=2, timeout=10)
        with pytest.raises(JudgeError, match=r"server error 503.*after 3 attempts"):
            judge.judge(request())
        assert server.request_count == 3  # the SDK's own retries are off: ours are the only ones
        judge.close()


def test_classify_status_is_shared_by_the_http_backends() -> None:
    from pytest_llmjudge.judges.retry import FormatRejected, classify_status

    def classify(status: int, body: str = "oops", mode: str = "json_schema", **kw: object):
        return classify_status(status, body, mode=mode, retry_after=kw.pop("retry_after", None),
                               auth_hint="check KEY", **kw)  # type: ignore[arg-type]

    limited = classify(429, retry_after="2.5")
    assert (limited.retryable, limited.retry_after) == (True, 2.5)
    assert classify(429, retry_after="soon").retry_after is None
    with pytest.raises(FormatRejected):
        classify(400)  # a structured-output request refused: try the next mode
    with pytest.raises(FormatRejected):
        classify(500, "response_format is not supported")  # llama.cpp says it with a 500
    with pytest.raises(FormatRejected):
        classify(400, "logprobs are not supported", mode="text", logprobs=True)
    assert classify(400, mode="text").retryable is False  # nothing left to fall back to
    assert classify(503).retryable is True
    auth = classify(401, mode="text")
    assert not auth.retryable and "check KEY" in auth.message
