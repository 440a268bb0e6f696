"""A progress count of judged verdicts for ``-v`` runs that take more than a few seconds.

pytest's own progress stays as it is; after a test's line, at most every :data:`EVERY_S`
seconds and only once the run is :data:`AFTER_S` seconds old, one line is added::

    llm judge: 120 verdicts (104 passed, 12 failed, 4 judge errors), 9.8 verdicts/s
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .collect import RunSummary

if TYPE_CHECKING:
    from ..run.run_plugin import LLMJudgeRun

AFTER_S = 5.0
EVERY_S = 5.0


class VerdictProgress:
    """A reporter (``-v`` only) that writes the progress line through pytest's terminal reporter.

    Its ``verdict`` is called after pytest wrote the test's own line.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.last: float | None = None
        self.config: Any = None
        self.counts = {"passed": 0, "failed": 0, "errors": 0}

    def start(self, run: LLMJudgeRun) -> None:
        self.config = run.config if run.config.get_verbosity() > 0 else None
        self.started = self.clock()

    def verdict(self, row: Mapping[str, Any]) -> None:
        if self.config is None:
            return
        if row.get("error") or row.get("score") is None:
            self.counts["errors"] += 1
        else:
            self.counts["passed" if row.get("passed") else "failed"] += 1
        self.update()

    def finish(self, summary: RunSummary) -> None:
        pass

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
        passed, failed, errors = self.counts["passed"], self.counts["failed"], self.counts["errors"]
        total = passed + failed + errors
        rate = total / elapsed if elapsed > 0 else 0.0
        return (f"llm judge: {total} verdicts ({passed} passed, {failed} failed, {errors} judge errors), "
                f"{rate:.1f} verdicts/s")
