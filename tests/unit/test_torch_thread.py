"""The torch thread (torch_thread.py): every torch call of the process on one thread."""

from __future__ import annotations

import threading

import pytest

from pytest_llmjudge.torch_thread import run_on_torch_thread


def test_every_caller_runs_on_one_thread() -> None:
    seen: list[str] = []

    def where() -> str:
        return threading.current_thread().name

    threads = [threading.Thread(target=lambda: seen.append(run_on_torch_thread(where))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen.append(run_on_torch_thread(where))
    assert set(seen) == {"llmjudge-torch"}


def test_errors_reach_the_caller_and_nested_calls_run_inline() -> None:
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_on_torch_thread(fail)
    assert run_on_torch_thread(lambda: run_on_torch_thread(lambda x: x + 1, 1)) == 2
