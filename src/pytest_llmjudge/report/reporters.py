"""The reporter protocol and the built-in reports, registered from one list.

A reporter is any object with three methods, called on the xdist controller (or a plain run)::

    start(run)        # once, when the run is configured: run.config, run.settings, run.session
    verdict(row)      # each verdict as its test is reported: a results-file-shaped dict
                      # (test_id, metric, score, passed, reason, threshold, judge, error, ...)
    finish(summary)   # once, at session finish: the RunSummary every report renders

A report adds one class here and one entry in :data:`BUILTIN_REPORTERS`: a class with an
``option`` and a ``help`` declares its file option (flag plus ini key, checked before any test
runs), read back with ``run.settings.report_path(option)``. Users return their own reporters
from the ``pytest_llmjudge_reporters(config)`` hook. A ``finish`` that raises becomes one
error line at the end of the run (naming the reporter's ``option`` and ``target`` when it has
them); the other reports are still written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .collect import RunSummary

if TYPE_CHECKING:
    from ..run.run_plugin import LLMJudgeRun


@runtime_checkable
class Reporter(Protocol):
    """A report of the run (see the module docstring)."""

    def start(self, run: LLMJudgeRun) -> None: ...

    def verdict(self, row: Mapping[str, Any]) -> None: ...

    def finish(self, summary: RunSummary) -> None: ...


class _FileReport:
    """A report written to one file at the end of the run (nothing per verdict)."""

    option = ""
    #: with ``help``, the report declares ``option`` (a path) itself: see :data:`REPORT_OPTIONS`
    help = ""
    target: Any = None

    def start(self, run: LLMJudgeRun) -> None:
        self.run = run

    def verdict(self, row: Mapping[str, Any]) -> None:
        pass


class BaselineReport(_FileReport):
    """``--llm-save-baseline PATH``: the run's per-case verdicts as a baseline file."""

    option = "--llm-save-baseline"
    help = "Save this run's per-case verdicts as a baseline file"

    def start(self, run: LLMJudgeRun) -> None:
        super().start(run)
        self.target = run.settings.report_path(self.option)

    def finish(self, summary: RunSummary) -> None:
        if self.target is None or not summary.records:
            return
        from ..analysis.regression import save_baseline

        save_baseline(self.target, summary.records, summary.settings)
        summary.notes.append(f"baseline saved to {self.target}")


class HtmlReport(_FileReport):
    """``--llm-html PATH``: one self-contained HTML page."""

    option = "--llm-html"
    help = "Write a self-contained HTML report to this path"

    def start(self, run: LLMJudgeRun) -> None:
        super().start(run)
        self.target = run.settings.report_path(self.option)

    def finish(self, summary: RunSummary) -> None:
        if self.target is None:
            return
        from .html import render_html

        path = Path(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(summary), encoding="utf-8")
        summary.notes.append(f"HTML report written to {path}")


class MarkdownReport(_FileReport):
    """``--llm-markdown PATH``, and an appended copy in ``$GITHUB_STEP_SUMMARY`` when a test judged."""

    option = "--llm-markdown"
    help = "Write a markdown summary to this path (also appended to $GITHUB_STEP_SUMMARY when set)"

    def start(self, run: LLMJudgeRun) -> None:
        super().start(run)
        self.path = run.settings.report_path(self.option)
        self.target = self.path or "$GITHUB_STEP_SUMMARY"

    def finish(self, summary: RunSummary) -> None:
        from .markdown import environment_summary_path, markdown_summary, write_markdown

        step_summary = environment_summary_path(os.environ) if summary.metrics else None
        if self.path is None and step_summary is None:
            return
        text = markdown_summary(summary)
        if self.path is not None:
            write_markdown(text, self.path, append=False)
            summary.notes.append(f"markdown summary written to {self.path}")
        if step_summary is not None:
            write_markdown(text, step_summary, append=True)


class ResultsFileReport(_FileReport):
    """``--llm-results PATH``: verdict rows are appended as they complete (by the judging
    session, on xdist workers too); this writes the closing run record."""

    option = "--llm-results"

    def start(self, run: LLMJudgeRun) -> None:
        super().start(run)
        self.target = run.settings.results

    def finish(self, summary: RunSummary) -> None:
        totals = {"verdicts": len(summary.records), **summary.usage.as_dict(summary.prices)}
        self.run.session.results.write_run(totals)


class JUnitReport(_FileReport):
    """``--junitxml``: the testsuite's properties (the per-test ones go with each test's report)."""

    option = "--junitxml"

    def finish(self, summary: RunSummary) -> None:
        from . import junit

        xml = junit.log_xml(self.run.config)
        if xml is not None and summary.metrics:
            for name, value in junit.suite_properties(summary):
                xml.add_global_property(name, value)


class TerminalReport(_FileReport):
    """The ``llm judge summary`` section; pytest's terminal reporter writes its lines."""

    option = "terminal"

    def start(self, run: LLMJudgeRun) -> None:
        super().start(run)
        self.summary: RunSummary | None = None

    def finish(self, summary: RunSummary) -> None:
        self.summary = summary

    def lines(self) -> list[str]:
        """The section's lines (none when no test judged)."""
        from .terminal import summary_lines

        summary = self.summary
        if summary is None or not summary.metrics:
            return []
        return summary_lines(summary, judge_calls=summary.judge_calls,
                             verbose=self.run.config.get_verbosity() > 0)


def _progress() -> Reporter:
    from .progress import VerdictProgress

    return VerdictProgress()


#: every built-in report, in the order they finish (the terminal renders what the others noted)
BUILTIN_REPORTERS: list[Any] = [
    BaselineReport, HtmlReport, MarkdownReport, ResultsFileReport, JUnitReport, _progress, TerminalReport,
]
#: (option, help) of each file option a built-in report declares itself
REPORT_OPTIONS: list[tuple[str, str]] = [
    (factory.option, factory.help) for factory in BUILTIN_REPORTERS if getattr(factory, "help", "")
]
