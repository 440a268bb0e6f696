"""pytest-llmjudge's own hooks; implement them in a ``conftest.py`` or a plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_llmjudge_make_judge(config: pytest.Config, spec: str) -> Any:
    """Return the Judge for ``spec`` (e.g. ``openai:gpt-4o-mini``), or None to let others try.

    Example, a conftest.py that grades with an in-process fake::

        from pytest_llmjudge.judges import FakeJudge

        def pytest_llmjudge_make_judge(config, spec):
            if spec == "fake:always-5":
                return FakeJudge(lambda request: {"reason": "ok", "score": 5}, name=spec)
    """


@pytest.hookspec
def pytest_llmjudge_reporters(config: pytest.Config) -> Any:
    """Return reporters (or None) to add to the run's reports; every implementation is called.

    A reporter has ``start(run)``, ``verdict(row)`` and ``finish(summary)`` (see
    :mod:`pytest_llmjudge.report.reporters`). Called once when the run is configured, on the
    xdist controller or a plain run (not on workers), so implement it in a plugin or a
    ``conftest.py`` pytest loads at start-up (the rootdir's, or one beside the test paths given).

    Example, a conftest.py that counts failed verdicts per judge::

        class FailuresPerJudge:
            def start(self, run):
                self.failed = {}

            def verdict(self, row):
                if row["passed"] is False:
                    self.failed[row["judge"]] = self.failed.get(row["judge"], 0) + 1

            def finish(self, summary):
                summary.notes.append(f"failed verdicts per judge: {self.failed}")

        def pytest_llmjudge_reporters(config):
            return [FailuresPerJudge()]
    """
