"""Retries: backoff, Retry-After, bounded attempts, the per-endpoint gate (in-flight bound,
adaptive concurrency) and the retry budget that scales with the work."""

from __future__ import annotations

import threading
import time

import pytest

from pytest_llmjudge.errors import JudgeError
from pytest_llmjudge.judges import retry
from pytest_llmjudge.judges.openai_compat import OpenAIJudge
from pytest_llmjudge.judges.retry import (
    MAX_DELAY_S,
    EndpointGate,
    EndpointGates,
    Failure,
    backoff_delay,
    call_with_retries,
)
from pytest_llmjudge.judging.evaluation import build_request
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
    assert call_with_retries(fn, classify, gate=EndpointGate(), max_retries=4, judge="j", sleep=slept.append) == "ok"
    assert len(calls) == 3 and len(slept) == 2


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_attempts_are_bounded(max_retries: int) -> None:
    fn, classify, calls = failing(100)
    with pytest.raises(JudgeError) as info:
        call_with_retries(fn, classify, gate=EndpointGate(), max_retries=max_retries, judge="openai:m",
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
        call_with_retries(fn, classify, gate=EndpointGate(), max_retries=4, judge="j", sleep=lambda s: None)
    assert len(calls) == 1


def test_foreign_exceptions_propagate_unchanged() -> None:
    def fn() -> None:
        raise KeyError("not ours")

    with pytest.raises(KeyError):
        call_with_retries(fn, lambda exc: None, gate=EndpointGate(), max_retries=4, judge="j")


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


def rate_limited(times: int, retry_after: float | None = 0.5):
    """fn, classify and a call log: fn is rate limited ``times`` times, then returns "ok"."""
    fn, _classify, calls = failing(times)

    def classify(exc: Exception) -> Failure | None:
        return Failure(True, "rate limited (429)", retry_after, rate_limited=True) if isinstance(exc, Boom) else None

    return fn, classify, calls


def test_a_429_waits_its_retry_after_without_spending_retries_or_budget() -> None:
    gate = EndpointGate(budget_base=0, budget_per_call=0)
    fn, classify, calls = rate_limited(7, retry_after=0.5)
    slept: list[float] = []
    # max_retries=0 and no budget at all: rate limits are not failures
    assert call_with_retries(fn, classify, gate=gate, max_retries=0, judge="j", sleep=slept.append) == "ok"
    assert len(calls) == 8 and slept == [0.5] * 7
    assert gate.rate_limited == 7 and gate.budget_refusals == 0


def test_a_429_without_retry_after_backs_off_exponentially() -> None:
    fn, classify, _calls = rate_limited(3, retry_after=None)
    slept: list[float] = []
    call_with_retries(fn, classify, gate=EndpointGate(), max_retries=0, judge="j", sleep=slept.append)
    assert len(slept) == 3 and all(0 <= d <= retry.BASE_DELAY_S * 2**i for i, d in enumerate(slept))


def test_rate_limit_patience_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "RATE_LIMIT_PATIENCE_S", 2.0)
    fn, classify, calls = rate_limited(100, retry_after=0.5)
    with pytest.raises(JudgeError, match=r"still rate limited after 5 attempts over 2 s"):
        call_with_retries(fn, classify, gate=EndpointGate(), max_retries=4, judge="j", sleep=lambda s: None)
    assert len(calls) == 5


def test_the_limit_halves_once_per_round_and_grows_back() -> None:
    gate = EndpointGate(max_in_flight=16)
    rounds = [gate.acquire() for _ in range(8)]
    for sent_in in rounds:  # eight 429s from requests sent at the same limit: one decrease
        gate.release()
        gate.backoff(sent_in)
    assert gate.limit == 8
    gate.backoff(gate.acquire())  # a request sent after the cut: a second decrease
    gate.release()
    assert gate.limit == 4 and gate.lowest_limit == 4
    for _ in range(200):  # additive increase, capped at the maximum
        gate.succeeded()
    assert gate.limit == 16
    for _ in range(10):
        gate.backoff(gate.acquire())
        gate.release()
    assert gate.limit == 1  # never below one


def test_a_429_paces_new_requests_at_the_rate_the_endpoint_answered() -> None:
    gate = EndpointGate(max_in_flight=16)
    for _ in range(10):  # ten answers in the last second, then a 429 with Retry-After: 1
        gate.acquire()
        gate.release()
        gate.succeeded()
    gate.backoff(gate.acquire(), retry_after=1.0)
    gate.release()
    started = time.monotonic()
    for _ in range(3):
        gate.acquire()
        gate.release()
    # about 0.1 s apart (1 s / 10 answers), less 3% per success: never a burst
    assert time.monotonic() - started >= 0.15
    for _ in range(200):
        gate.succeeded()  # successes shorten the spacing back towards none
    time.sleep(0.15)  # the slot already promised
    started = time.monotonic()
    for _ in range(5):
        gate.acquire()
        gate.release()
    assert time.monotonic() - started < 0.25  # five sends, where 0.1 s spacing would take 0.4 s


def test_the_gate_bounds_requests_in_flight_across_threads() -> None:
    gate = EndpointGate(max_in_flight=3)
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def fn() -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return "ok"

    threads = [threading.Thread(target=call_with_retries, args=(fn, lambda exc: None),
                                kwargs={"gate": gate, "max_retries": 0, "judge": "j"}) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 3 and gate.in_flight == 0


def test_retry_budget_scales_with_the_work() -> None:
    gate = EndpointGate("http://h/v1", budget_base=2, budget_per_call=2)
    for _ in range(50):  # every call failing twice: within 2 per call
        fn, classify, _calls = failing(2)
        assert call_with_retries(fn, classify, gate=gate, max_retries=4, judge="j", sleep=lambda s: None) == "ok"
    # a dead server: each call spends its 2 + what is left, then the budget refuses
    refused = 0
    for _ in range(10):
        fn, classify, _calls = failing(100)
        with pytest.raises(JudgeError) as info:
            call_with_retries(fn, classify, gate=gate, max_retries=4, judge="j", sleep=lambda s: None)
        refused += "retry budget is exhausted" in str(info.value)
    assert refused >= 8 and gate.budget_refusals == refused


def test_exhausted_budgets_are_reported_per_endpoint() -> None:
    gates = EndpointGates()
    gate = gates.gate_for("http://127.0.0.1:1/v1")
    gate._budget = 0
    fn, classify, _calls = failing(100)
    with pytest.raises(JudgeError, match="retry budget is exhausted"):
        call_with_retries(fn, classify, gate=gate, max_retries=4, judge="j", sleep=lambda s: None)
    assert gates.budget_exhausted() == {"http://127.0.0.1:1/v1": 1}
    assert EndpointGates().budget_exhausted() == {}  # another run's gates know nothing of it


def test_gate_for_is_one_gate_per_endpoint() -> None:
    gates = EndpointGates()
    assert gates.gate_for("http://a/v1") is gates.gate_for("http://a/v1")
    assert gates.gate_for("http://a/v1") is not gates.gate_for("http://b/v1")
    assert gates.gate_for("http://a/v1", 32).max_in_flight == 32  # a judge wanting more raises it
    assert EndpointGates().gate_for("http://a/v1") is not gates.gate_for("http://a/v1")  # one set per run


def test_a_gate_of_a_judge_built_outside_the_run_is_in_its_notes() -> None:
    run = EndpointGates()
    outside = EndpointGates().gate_for("http://x/v1")  # make_judge(...) in a test: its own gates
    outside.backoff(outside.acquire())
    run.adopt(outside)
    run.adopt(outside)
    run.adopt(run.gate_for("http://y/v1"))  # the run's own: not listed twice
    [note] = run.notes()
    assert note.startswith("judge endpoint http://x/v1: 1 rate-limited requests (429)")


# -- against the fake server with the real openai client ---------------------------
def request(i: int = 0):
    metric = get_metric("correctness")
    return build_request(metric, MetricInputs(output=f"Paris ({i}).", input="Capital?", expected="Paris."))


def run_threads(judge: OpenAIJudge, n: int, threads: int = 16) -> list[BaseException]:
    errors: list[BaseException] = []
    pending = list(range(n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                i = pending.pop()
            try:
                judge.judge(request(i))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join(120)
    return errors


def test_a_rate_limited_server_loses_no_verdict() -> None:
    """The issue's case, scaled down: 20 req/s allowed, 429 + Retry-After beyond, 16 threads."""
    with FakeJudgeServer(latency=0.02) as server:
        server.rate_limit(20, retry_after=0.5)
        judge = OpenAIJudge("fake", base_url=server.url, max_retries=4, timeout=10)
        assert run_threads(judge, 60) == []
        assert server.rate_limited > 0 and judge.gate.limit < 16  # it did back off
        judge.close()


def test_a_server_failing_every_request_twice_loses_no_verdict() -> None:
    with FakeJudgeServer(latency=0.0) as server:
        server.fail_each(500, 2)
        judge = OpenAIJudge("fake", base_url=server.url, max_retries=4, timeout=10)
        assert run_threads(judge, 40) == []
        assert server.request_count == 120
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
