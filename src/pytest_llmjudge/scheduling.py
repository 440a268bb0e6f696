"""Concurrent judging with pytest's semantics: run ahead, report in order.

With ``--llm-concurrency N > 1`` a test's ``assert_llm_score`` calls go to worker threads and
the test body goes on. Its reports (setup, call, teardown) are held until its verdicts
arrive, then logged in collection order, so the terminal, JUnit XML, ``-x``/``--maxfail`` and
``--lf`` see exactly what a sequential run would: a failure found late is put on the test
that asked for it, and items that ran ahead of a ``-x`` stop are dropped unreported.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol

from .assertion import ItemVerdicts, items_key

if TYPE_CHECKING:
    from _pytest.reports import TestReport

    from .plugin import ReportFinalizer


class OrderedRelease:
    """Holds finished items until their verdicts are in; releases them in order."""

    def __init__(self, session: pytest.Session, finalize: ReportFinalizer, window: int) -> None:
        self.session = session
        self.finalize = finalize
        self.window = window
        self.queue: deque[tuple[pytest.Item, list[TestReport]]] = deque()
        self._xdist: Any = None  # pytest-xdist's WorkerInteractor on a worker, else False
        self._indices: dict[str, int] | None = None

    def run(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Run one item without logging it, then release what is ready."""
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        self.queue.append((item, reports))
        self.release_ready()
        while len(self.queue) > self.window:
            self._release_first()
        if nextitem is None:
            self.drain()

    def release_ready(self) -> None:
        while self.queue and _done(self.queue[0][0]):
            self._release_first()

    def drain(self, *, wait: bool = True) -> None:
        """Release everything; with ``wait=False`` (interrupted) only what is already judged."""
        if wait:
            while self.queue:
                self._release_first()
        else:
            self.release_ready()
            self.queue.clear()

    def _release_first(self) -> None:
        item, reports = self.queue.popleft()
        if self.session.shouldfail or self.session.shouldstop:
            self.queue.clear()  # a sequential run would never have run these
            return
        self.finalize(item, reports)
        ihook = item.ihook
        interactor, saved = self._point_xdist_at(item)
        try:
            ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            for report in reports:
                ihook.pytest_runtest_logreport(report=report)
            ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        finally:
            if interactor is not None:
                interactor.item_index = saved
        if self.session.shouldfail or self.session.shouldstop:
            self.queue.clear()


    def _point_xdist_at(self, item: pytest.Item) -> tuple[Any, Any]:
        """An xdist worker sends each report with the index of the item it is running (and
        asserts they match): while a held item is logged, point it at that item."""
        if self._xdist is None:
            self._xdist = next(
                (p for p in self.session.config.pluginmanager.get_plugins()
                 if type(p).__name__ == "WorkerInteractor" and hasattr(p, "item_index")),
                False,
            )
        if not self._xdist:
            return None, None
        if self._indices is None:
            self._indices = {it.nodeid: i for i, it in enumerate(self.session.items)}
        saved = self._xdist.item_index
        self._xdist.item_index = self._indices[item.nodeid]
        return self._xdist, saved


def _done(item: pytest.Item) -> bool:
    record: ItemVerdicts | None = item.stash.get(items_key, None)
    return record is None or record.done
