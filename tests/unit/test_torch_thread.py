"""The torch thread (torch_thread.py): every torch call of the process on one thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from pytest_llmjudge.torch_thread import cores_per_worker, run_on_torch_thread


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


def test_an_xdist_worker_takes_its_share_of_the_cores() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert cores_per_worker({"PYTEST_XDIST_WORKER_COUNT": "2"}) == max(1, cores // 2)
    assert cores_per_worker({"PYTEST_XDIST_WORKER_COUNT": str(4 * cores)}) == 1
    assert cores_per_worker({}) is None  # not under xdist
    assert cores_per_worker({"PYTEST_XDIST_WORKER_COUNT": "1"}) is None
    assert cores_per_worker({"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "2"}) is None  # the user chose


def test_the_torch_thread_applies_the_share_in_a_worker() -> None:
    pytest.importorskip("torch")
    code = ("import torch; from pytest_llmjudge.torch_thread import run_on_torch_thread, cores_per_worker;"
            "print(run_on_torch_thread(torch.get_num_threads), cores_per_worker())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTEST_XDIST_WORKER_COUNT"] = "64"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]


def test_the_torch_thread_serves_in_a_worker_without_torch(tmp_path) -> None:
    """The core install has no torch: the thread must still run calls under xdist (it hung)."""
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    code = "from pytest_llmjudge.torch_thread import run_on_torch_thread; print(run_on_torch_thread(lambda: 42))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTEST_XDIST_WORKER_COUNT="2", PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["42"], done.stderr
