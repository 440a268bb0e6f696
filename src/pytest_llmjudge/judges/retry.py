"""Retries and adaptive concurrency, shared by every request to one endpoint.

Every request to an endpoint goes through its :class:`EndpointGate`:

* **in-flight bound** — at most ``limit`` requests at once, whatever the number of threads
  calling (test cases run concurrently, each may judge several metrics);
* **adaptive limit** (AIMD, as promptfoo does) — a 429 halves the limit (once per round of
  requests sent at the old limit), each success grows it back by ``1/limit`` up to the maximum;
* **pacing** — a 429 also spaces new requests at the rate the endpoint was answering just
  before it (successes in the last ``Retry-After`` seconds), so a rate limit is met instead of
  bounced off; each success shortens the spacing by 3% until the next 429;
* **rate limits are not failures** — a 429 waits its ``Retry-After`` (or an exponential
  backoff) and is retried without spending the request's ``max_retries`` or the retry
  budget, for up to :data:`RATE_LIMIT_PATIENCE_S` of waiting per request;
* **retry budget for failures** (5xx, timeouts, dropped connections) that scales with the
  work: :data:`BUDGET_BASE` retries up front plus :data:`BUDGET_PER_CALL` per judge call
  started, so a server failing every request twice loses nothing while a dead one is not
  hammered with ``max_retries`` retries per call. When it runs out the error says so and
  :meth:`EndpointGates.budget_exhausted` names the endpoint for the run's summary.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import JudgeError

T = TypeVar("T")

#: retries after the first attempt on 429/5xx/timeouts, and the per-request timeout, unless configured
DEFAULT_MAX_RETRIES = 4
DEFAULT_TIMEOUT_S = 60.0
#: requests in flight per endpoint before any 429 is seen
DEFAULT_MAX_IN_FLIGHT = 16
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
#: retries of failures an endpoint may spend up front ...
BUDGET_BASE = 20.0
#: ... plus this many per judge call started (the budget scales with the work)
BUDGET_PER_CALL = 2.0
#: how long one request keeps waiting out 429s before it becomes a judge error
RATE_LIMIT_PATIENCE_S = 300.0

#: words in an error body that say the server refused the structured-output request
FORMAT_WORDS = ("response_format", "json_schema", "json schema", "grammar", "schema")


class FormatRejected(Exception):
    """The server refused the request's structured-output mode (or logprobs): try the next one."""


@dataclass
class Failure:
    """How a backend classified an exception."""

    retryable: bool
    message: str
    retry_after: float | None = None
    #: a 429: waited out and retried without spending max_retries or the budget
    rate_limited: bool = False


class EndpointGate:
    """In-flight limit, adaptive concurrency and retry budget of one endpoint (thread-safe)."""

    def __init__(
        self,
        endpoint: str = "",
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        budget_base: float = BUDGET_BASE,
        budget_per_call: float = BUDGET_PER_CALL,
    ) -> None:
        self.endpoint = endpoint
        self.max_in_flight = max(1, max_in_flight)
        self._cond = threading.Condition()
        self._limit = float(self.max_in_flight)
        self._in_flight = 0
        self._round = 0  # bumped by each decrease: one decrease per round of requests
        self._interval = 0.0  # pacing between sends, learnt from 429s
        self._next_send = 0.0
        self._successes: deque[float] = deque(maxlen=4096)
        self._budget = budget_base
        self._budget_per_call = budget_per_call
        #: retries refused because the budget ran out
        self.budget_refusals = 0
        #: 429s seen, and the lowest limit they drove the gate to
        self.rate_limited = 0
        self.lowest_limit = self.max_in_flight

    @property
    def limit(self) -> int:
        with self._cond:
            return int(self._limit)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def raise_max(self, max_in_flight: int) -> None:
        """Allow up to ``max_in_flight`` (a second judge on the endpoint with a higher one)."""
        with self._cond:
            if max_in_flight > self.max_in_flight:
                self._limit += max_in_flight - self.max_in_flight
                self.max_in_flight = max_in_flight
                self._cond.notify_all()

    # -- slots
    def acquire(self) -> int:
        """Wait for a free slot; returns the round the request is sent in."""
        with self._cond:
            while True:
                if self._in_flight < int(self._limit):
                    wait = self._next_send - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            self._in_flight += 1
            if self._interval:
                self._next_send = max(self._next_send, time.monotonic()) + self._interval
            return self._round

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def succeeded(self) -> None:
        """Additive increase: ``1/limit`` per success, about one slot per round."""
        with self._cond:
            self._successes.append(time.monotonic())
            self._interval *= 0.97
            before = int(self._limit)
            self._limit = min(float(self.max_in_flight), self._limit + 1.0 / self._limit)
            if int(self._limit) > before:
                self._cond.notify_all()

    def backoff(self, sent_in_round: int, retry_after: float | None = None) -> None:
        """Multiplicative decrease on a 429, once for all requests sent in the same round, and
        pacing at the rate of the successes in the last ``retry_after`` (or 1) seconds."""
        with self._cond:
            self.rate_limited += 1
            window = min(max(retry_after or 1.0, 0.1), MAX_DELAY_S)
            since = time.monotonic() - window
            recent = sum(1 for t in self._successes if t >= since)
            if recent >= 2:  # fewer says little about the endpoint's rate
                self._interval = window / recent
            if sent_in_round == self._round:
                self._limit = max(1.0, self._limit / 2)
                self._round += 1
                self.lowest_limit = min(self.lowest_limit, int(self._limit))

    # -- failure budget
    def begin_call(self) -> None:
        with self._cond:
            self._budget += self._budget_per_call

    def spend(self) -> bool:
        """Take one retry from the budget; False (and counted) when it is exhausted."""
        with self._cond:
            if self._budget < 1.0:
                self.budget_refusals += 1
                return False
            self._budget -= 1.0
            return True


class EndpointGates:
    """The gates of one run (or one CLI command), one per endpoint: judges on the same endpoint
    share its in-flight limit and retry budget. The plugin's run owns one; a judge built on its
    own gets its own."""

    def __init__(self) -> None:
        self._gates: dict[str, EndpointGate] = {}
        self._adopted: dict[int, EndpointGate] = {}  # gates of judges built outside the run
        self._lock = threading.Lock()

    def gate_for(self, endpoint: str, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> EndpointGate:
        """The gate of an endpoint (pass a credential-free key: it is shown)."""
        with self._lock:
            gate = self._gates.get(endpoint)
            if gate is None:
                gate = self._gates[endpoint] = EndpointGate(endpoint, max_in_flight=max_in_flight)
            else:
                gate.raise_max(max_in_flight)
            return gate

    def adopt(self, gate: EndpointGate) -> None:
        """Report on the gate of a judge the run did not build (``make_judge`` in a test)."""
        with self._lock:
            if gate not in self._gates.values():
                self._adopted.setdefault(id(gate), gate)

    def _all(self) -> list[EndpointGate]:
        with self._lock:
            return sorted([*self._gates.values(), *self._adopted.values()], key=lambda g: g.endpoint)

    def budget_exhausted(self) -> dict[str, int]:
        """``{endpoint: retries refused}`` for each endpoint whose retry budget ran out."""
        return {gate.endpoint: gate.budget_refusals for gate in self._all() if gate.budget_refusals}

    def notes(self) -> list[str]:
        """Summary lines for endpoints that rate-limited the run or ran out of retry budget."""
        gates = self._all()
        lines = []
        for gate in gates:
            if gate.rate_limited:
                lines.append(f"judge endpoint {gate.endpoint}: {gate.rate_limited} rate-limited requests (429) "
                             f"waited out and retried; requests in flight lowered to {gate.lowest_limit} "
                             f"(of {gate.max_in_flight}) at the lowest")
            if gate.budget_refusals:
                lines.append(f"judge endpoint {gate.endpoint}: retry budget exhausted ({BUDGET_BASE:.0f} + "
                             f"{BUDGET_PER_CALL:g} per judge call); {gate.budget_refusals} failed requests were "
                             "not retried")
        return lines


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_DELAY_S)
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))


def call_with_retries(
    fn: Callable[[], T],
    classify: Callable[[Exception], Failure | None],
    *,
    gate: EndpointGate,
    max_retries: int,
    judge: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` in one of the gate's slots; retry what ``classify`` marks retryable.

    ``classify`` returns None for exceptions that are not the backend's (they propagate).
    Failures raise :class:`JudgeError` after ``max_retries`` retries or when the endpoint's
    budget is spent; 429s are waited out without counting (see the module docstring).
    """
    gate.begin_call()
    attempt = 0
    limited = 0
    waited = 0.0
    while True:
        sent_in = gate.acquire()
        try:
            result = fn()
        except Exception as exc:
            gate.release()
            failure = classify(exc)
            if failure is None:
                raise
            if failure.rate_limited:
                gate.backoff(sent_in, failure.retry_after)
                delay = backoff_delay(limited, failure.retry_after)
                if waited + delay > RATE_LIMIT_PATIENCE_S:
                    raise JudgeError(
                        f"{judge}: {failure.message}; still rate limited after {limited + 1} "
                        f"attempts over {waited:.0f} s",
                        judge=judge,
                    ) from None
                sleep(delay)
                waited += delay
                limited += 1
                continue
            if not failure.retryable or attempt >= max_retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise JudgeError(f"{judge}: {failure.message}{tries}", judge=judge) from None
            if not gate.spend():
                raise JudgeError(
                    f"{judge}: {failure.message}; the endpoint's retry budget is exhausted "
                    f"({BUDGET_BASE:.0f} + {BUDGET_PER_CALL:g} per judge call: the server fails "
                    "more often than that)",
                    judge=judge,
                ) from None
            sleep(backoff_delay(attempt, failure.retry_after))
            attempt += 1
            continue
        gate.release()
        gate.succeeded()
        return result


def classify_status(
    status: int, body: str, *, mode: str, retry_after: str | None, auth_hint: str, logprobs: bool = False,
) -> Failure:
    """How an HTTP error status is treated, for every backend; ``body`` is already redacted.

    Raises :class:`FormatRejected` when the server refused the structured-output ``mode``
    (a 400/415/422, or a 5xx that names the format, as llama.cpp answers) or the logprobs.
    """
    if status == 429:
        return Failure(True, f"rate limited (429): {body}", _seconds(retry_after), rate_limited=True)
    lowered = body.lower()
    names_format = any(word in lowered for word in FORMAT_WORDS)
    names_logprobs = logprobs and "logprob" in lowered
    refused = status in (400, 415, 422) or (status >= 500 and names_format)
    if refused and (mode != "text" or names_logprobs) and (names_format or names_logprobs or status < 500):
        raise FormatRejected(f"{status}: {body}")
    if status >= 500:
        return Failure(True, f"server error {status}: {body}", _seconds(retry_after))
    if status in (401, 403):
        return Failure(False, f"authentication failed ({status}); {auth_hint}")
    return Failure(False, f"request rejected ({status}): {body}")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
