"""Run every torch call of the process on one long-lived thread.

Measured here (torch 2.13 CPU wheel, its GNU OpenMP, 2 cores): once one thread has run torch's
parallel kernels, the same work on any *other* thread is about 1.5x slower (SmolLM2-135M, a
4-row decode step: 52 ms on the thread that loaded the model, 80 ms on a second thread, and
54 ms on that second thread when it is the only one that ever used torch). The local judge is
called from the plugin's worker threads and from the main thread alike, so its torch work
(load, prefill, decode) and the similarity metric's embeddings all go through this thread.

Under pytest-xdist each worker process would start torch with one thread per core, so N workers
put N times as many busy threads on the cores as there are cores; OpenMP threads that spin-wait
for each other then stall (a forward pass of SmolLM2 took 10x longer with 2 threads than with 1
on this 2-core machine under load). So a worker gives its torch its share of the cores, unless
the user chose the thread count (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class _TorchThread:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.current_thread() is self._thread:
            return fn(*args)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="llmjudge-torch", daemon=True)
                self._thread.start()
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        return future.result()

    def _serve(self) -> None:
        share_cores_with_xdist_workers()
        while True:
            future, fn, args = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                future.set_exception(exc)


def cores_per_worker(environ: Mapping[str, str] = os.environ) -> int | None:
    """Torch threads for this process when it is one of several xdist workers and the user set no
    ``OMP_NUM_THREADS``: its share of the cores it may run on (at least 1); else None."""
    workers = environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if "OMP_NUM_THREADS" in environ or not workers.isdigit() or int(workers) < 2:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // int(workers))


def share_cores_with_xdist_workers() -> None:
    """On the torch thread: lower torch's intra-op threads to :func:`cores_per_worker`, if set."""
    share = cores_per_worker()
    if share is None:
        return
    try:
        import torch
    except ImportError:  # the plugin without its local extra: nothing to share
        return
    if torch.get_num_threads() > share:
        torch.set_num_threads(share)


_torch_thread = _TorchThread()


def run_on_torch_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the process's torch thread (directly when already there); returns or raises its outcome."""
    return _torch_thread.call(fn, *args)
