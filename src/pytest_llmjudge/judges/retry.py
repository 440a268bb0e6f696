"""Retries with exponential backoff and jitter, shared by every request to one endpoint.

All requests to an endpoint share a :class:`RetryGate`: a 429 with ``Retry-After`` pauses
every caller until then (a rate-limit storm backs everyone off instead of hammering), and a
retry budget caps how many retries the endpoint may spend beyond its successes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import JudgeError

T = TypeVar("T")

DEFAULT_MAX_RETRIES = 4
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
#: retries an endpoint may spend up front; every success earns back a tenth of one
RETRY_BUDGET = 20.0


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


class RetryGate:
    """Backoff state shared by all requests to one endpoint."""

    def __init__(self, budget: float = RETRY_BUDGET) -> None:
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._budget = budget
        self._budget_max = budget

    def wait(self) -> None:
        """Sleep while the endpoint is paused by a rate limit."""
        while True:
            with self._lock:
                delay = self._paused_until - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 1.0))

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def spend(self) -> bool:
        """Take one retry from the budget; False when the budget is exhausted."""
        with self._lock:
            if self._budget < 1.0:
                return False
            self._budget -= 1.0
            return True

    def earn(self) -> None:
        with self._lock:
            self._budget = min(self._budget_max, self._budget + 0.1)


_gates: dict[str, RetryGate] = {}
_gates_lock = threading.Lock()


def gate_for(endpoint: str) -> RetryGate:
    """The process-wide gate of an endpoint."""
    with _gates_lock:
        gate = _gates.get(endpoint)
        if gate is None:
            gate = _gates[endpoint] = RetryGate()
        return gate


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_DELAY_S)
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))


def call_with_retries(
    fn: Callable[[], T],
    classify: Callable[[Exception], Failure | None],
    *,
    gate: RetryGate,
    max_retries: int,
    judge: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry the failures ``classify`` marks retryable, then raise JudgeError.

    ``classify`` returns None for exceptions that are not the backend's (they propagate).
    """
    attempt = 0
    while True:
        gate.wait()
        try:
            result = fn()
        except Exception as exc:  # classified below
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable or attempt >= max_retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise JudgeError(f"{judge}: {failure.message}{tries}", judge=judge) from None
            if not gate.spend():
                raise JudgeError(
                    f"{judge}: {failure.message}; the endpoint's retry budget is exhausted "
                    "(too many failures in this run)",
                    judge=judge,
                ) from None
            delay = backoff_delay(attempt, failure.retry_after)
            if failure.retry_after is not None:
                gate.pause(delay)
            else:
                sleep(delay)
            attempt += 1
            continue
        gate.earn()
        return result


def classify_status(
    status: int, body: str, *, mode: str, retry_after: str | None, auth_hint: str, logprobs: bool = False,
) -> Failure:
    """How an HTTP error status is treated, for every backend; ``body`` is already redacted.

    Raises :class:`FormatRejected` when the server refused the structured-output ``mode``
    (a 400/415/422, or a 5xx that names the format, as llama.cpp answers) or the logprobs.
    """
    if status == 429:
        return Failure(True, f"rate limited (429): {body}", _seconds(retry_after))
    lowered = body.lower()
    names_format = any(word in lowered for word in FORMAT_WORDS)
    names_logprobs = logprobs and "logprob" in lowered
    refused = status in (400, 415, 422) or (status >= 500 and names_format)
    if refused and (mode != "text" or names_logprobs) and (names_format or names_logprobs or status < 500):
        raise FormatRejected(f"{status}: {body}")
    if status >= 500:
        return Failure(True, f"server error {status}: {body}")
    if status in (401, 403):
        return Failure(False, f"authentication failed ({status}); {auth_hint}")
    return Failure(False, f"request rejected ({status}): {body}")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
