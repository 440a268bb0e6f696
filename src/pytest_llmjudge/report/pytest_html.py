"""pytest-html (4.x): each judged test's row gets an ``LLM verdicts`` column and its details.

Only pytest-html's public hooks are used: ``pytest_html_results_table_header`` and
``pytest_html_results_table_row`` add the column (metric, score, threshold, pass/fail and the
reason), ``pytest_html_results_table_html`` adds the full reasons to the row's log, for passing
tests too. Registered by :func:`register` when pytest-html 4 or newer is loaded.
"""

from __future__ import annotations

import html
from importlib import metadata
from typing import Any

import pytest

PLUGIN_NAME = "llmjudge-pytest-html"
REASON_CHARS = 200


def register(config: pytest.Config) -> None:
    """Add the hooks when pytest-html >= 4 is active (its older releases have other hook signatures)."""
    if not config.pluginmanager.hasplugin("html") or config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    try:
        major = int(metadata.version("pytest-html").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return
    if major >= 4:
        config.pluginmanager.register(PytestHtmlVerdicts(), PLUGIN_NAME)


def _records(report: Any) -> list[dict[str, Any]]:
    return list(getattr(report, "llmjudge_records", None) or ()) if report.when == "call" else []


def _verdict(record: dict[str, Any], limit: int | None) -> str:
    metric = html.escape(str(record.get("metric", "")))
    if record.get("error") or record.get("score") is None:
        error = str(record.get("error") or "no verdict")
        return f'<span class="llm-error">{metric}: judge error</span> {html.escape(_clip(error, limit))}'
    passed = bool(record.get("passed"))
    reason = _clip(" ".join(str(record.get("reason") or "").split()), limit)
    return (f'<span class="{"llm-passed" if passed else "llm-failed"}">{metric} {float(record["score"]):.2f}'
            f' (threshold {float(record.get("threshold") or 0):.2f}) {"passed" if passed else "failed"}</span>'
            + (f": {html.escape(reason)}" if reason else ""))


def _clip(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


class PytestHtmlVerdicts:
    """The pytest-html hooks; a test without verdicts gets an empty cell."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="sortable" data-column-type="llm">LLM verdicts</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        verdicts = "<br>".join(_verdict(r, REASON_CHARS) for r in _records(report))
        cells.insert(2, f'<td class="col-llm">{verdicts}</td>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        records = _records(report)
        if records:
            items = "".join(f"<li>{_verdict(r, None)}</li>" for r in records)
            data.append(f'<div class="llm-verdicts">LLM judge verdicts:<ul>{items}</ul></div>')
