"""A progress count of judged verdicts for ``-v`` runs that take more than a few seconds.

pytest's own progress stays as it is; after a test's line, at most every :data:`EVERY_S`
seconds and only once the run is :data:`AFTER_S` seconds old, one line is added::

    llm judge: 120 verdicts (104 passed, 12 failed, 4 judge errors), 9.8 verdicts/s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from .collect import RunSummary

AFTER_S = 5.0
EVERY_S = 5.0


class VerdictProgress:
    """A plugin (controller, ``-v``) that writes the progress line through pytest's terminal reporter."""

    def __init__(self, config: pytest.Config, summary: RunSummary, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.summary = summary
        self.clock = clock
        self.started = clock()
        self.last: float | None = None

    @pytest.hookimpl(trylast=True)  # after pytest wrote the test's own line
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and getattr(report, "llmjudge_records", None):
            self.update()

    def update(self) -> None:
        now = self.clock()
        if now - self.started < AFTER_S or (self.last is not None and now - self.last < EVERY_S):
            return
        terminal: Any = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        self.last = now
        terminal.write_line(self.line(now - self.started))

    def line(self, elapsed: float) -> str:
        metrics = self.summary.metrics.values()
        passed = sum(m.passed for m in metrics)
        failed = sum(m.failed for m in metrics)
        errors = sum(m.errors for m in metrics)
        total = passed + failed + errors
        rate = total / elapsed if elapsed > 0 else 0.0
        return (f"llm judge: {total} verdicts ({passed} passed, {failed} failed, {errors} judge errors), "
                f"{rate:.1f} verdicts/s")
