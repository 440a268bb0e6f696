"""The HTML report, loaded in real headless Chromium: what is shown after its script ran.

Needs Debian's ``chromium`` (``apt-get install chromium``); skipped when it is absent. Set
``LLMJUDGE_ARTIFACTS=DIR`` to keep the rendered report and its screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_llmjudge.analysis.regression import compare
from pytest_llmjudge.analysis.stats import wilson_interval
from pytest_llmjudge.report.html import render_html

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
XSS_REASON = "<script>document.body.setAttribute('data-pwned', '1')</script><script>alert(1)</script> wrong city"
XSS_OUTPUT = "</script><img src=x onerror=\"document.body.setAttribute('data-pwned', '2')\">Lyon"


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return path


def rec(metric: str, score: float | None, passed: bool, reason: str, *, samples: list[float] | None = None,
        output: str = "", expected: str = "", question: str = "", error: str | None = None,
        unstable: bool = False) -> dict[str, Any]:
    return {"metric": metric, "score": score, "raw_score": None, "scale": (0, 5), "reason": reason,
            "threshold": 0.6, "passed": passed, "judge": "fake:judge", "cached": False, "latency_s": 0.1,
            "usage": {}, "samples": samples or [], "error": error, "soft": False, "unstable": unstable,
            "input": question, "output": output, "expected": expected}


RECORDS = [
    ("tests/test_qa.py::test_qa[capital-fr]", rec("correctness", 1.0, True, "Matches the reference.",
     output="Paris is the capital of France.", expected="Paris", question="Capital of France?")),
    ("tests/test_qa.py::test_qa[capital-de]", rec("correctness", 0.4, False, "Says Munich; the capital is Berlin.",
     samples=[0.4, 0.4], output="Munich", expected="Berlin", question="Capital of Germany?")),
    ("tests/test_qa.py::test_qa[capital-it]", rec("correctness", 0.6, True, "Right, but hedges.",
     samples=[0.4, 0.8], output="Rome, I think", expected="Rome", question="Capital of Italy?", unstable=True)),
    ("tests/test_qa.py::test_qa[capital-es]", rec("correctness", 0.2, False, XSS_REASON,
     output=XSS_OUTPUT, expected="Madrid", question="Capital of Spain?")),
    ("tests/test_qa.py::test_qa[capital-fr]", rec("faithfulness", 0.8, True, "Supported by the context.",
     output="Paris is the capital of France.")),
    ("tests/test_rag.py::test_rag[doc-1]",
     rec("faithfulness", None, False, "", error="JudgeError: HTTP 500 from judge")),
]


class DomTable(HTMLParser):
    """Rows of ``table#cases`` (attributes and cell texts) and a few page facts from a DOM dump."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict[str, Any]] = []
        self.headers: list[dict[str, str | None]] = []
        self.scripts = 0
        self.body: dict[str, str | None] = {}
        self.table: dict[str, str | None] = {}
        self.texts: dict[str, str] = {}
        self._in_cases = False
        self._cell: list[str] | None = None
        self._capture: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self._cell is not None and tag in ("div", "span", "br"):
            self._cell.append(" ")  # a block or badge boundary reads as a space
        if tag == "script":
            self.scripts += 1
        elif tag == "body":
            self.body = a
        elif tag == "table" and a.get("id") == "cases":
            self._in_cases, self.table = True, a
        elif self._in_cases and tag == "th":
            self.headers.append(a)
        elif self._in_cases and tag == "tr" and "data-index" in a:
            self.rows.append({"attrs": a, "hidden": "hidden" in a, "cells": []})
        elif self._in_cases and tag == "td":
            self._cell = []
        elif a.get("id") in ("count", "summary"):
            self._capture = str(a["id"])
            self.texts[self._capture] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_cases = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag in ("span", "div") and self._capture:
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._capture:
            self.texts[self._capture] += data

    @property
    def visible(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["hidden"]]


def write_report(tmp_path: Path, name: str = "report.html", **kwargs: Any) -> Path:
    path = tmp_path / name
    path.write_text(render_html(RECORDS, title="QA suite <v2>", settings={"judge": "fake:judge"}, **kwargs),
                    encoding="utf-8")
    return path


def run_chromium(chromium: str, tmp_path: Path, url: str, *extra: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def load(chromium: str, tmp_path: Path, path: Path, fragment: str = "") -> DomTable:
    dom = run_chromium(chromium, tmp_path, path.as_uri() + fragment, "--dump-dom")
    parsed = DomTable()
    parsed.feed(dom)
    assert parsed.body.get("data-ready") == "1", "the report's script did not run"
    return parsed


def test_report_shows_every_case_and_escapes_injection(chromium: str, tmp_path: Path) -> None:
    path = write_report(tmp_path)
    source = path.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in source and "</script><img" not in source
    assert "http://" not in source and "https://" not in source  # nothing to fetch

    page = load(chromium, tmp_path, path)
    assert len(page.rows) == 6 and len(page.visible) == 6
    assert page.texts["count"] == "Showing 6 of 6 cases"
    assert page.table["data-shown"] == "6"
    assert page.body.get("data-records") == "6"  # the embedded JSON parsed
    # the injected markup is shown as text and never ran
    assert "data-pwned" not in page.body
    assert page.scripts == 2  # the embedded data and the report's own script: nothing injected
    spain = next(r for r in page.rows if r["cells"][0].endswith("[capital-es]"))
    assert spain["cells"][9] == " ".join(XSS_REASON.split())
    assert spain["cells"][7] == " ".join(XSS_OUTPUT.split())
    # columns: test id, metric, score, samples, passed, unstable, input, output, reference, reason
    italy = next(r for r in page.rows if r["cells"][0].endswith("[capital-it]"))
    assert italy["cells"][1:6] == ["correctness", "0.600 ≥ 0.6", "0.40 0.80", "passed", "unstable"]
    assert italy["cells"][8] == "Rome"
    error = next(r for r in page.rows if r["attrs"]["data-passed"] == "error")
    assert error["cells"][2] == "error" and error["cells"][9] == "JudgeError: HTTP 500 from judge"
    assert page.texts["summary"] == "6 verdict(s) · 3 passed · 2 failed · 1 judge error(s) · 1 unstable"


def test_report_metric_cards(chromium: str, tmp_path: Path) -> None:
    path = write_report(tmp_path)
    dom = run_chromium(chromium, tmp_path, path.as_uri(), "--dump-dom")
    cards = re.findall(r'<section class="card metric" data-metric="([^"]+)">(.*?)</section>', dom, re.S)
    assert [name for name, _ in cards] == ["correctness", "faithfulness"]
    correctness = cards[0][1]
    low, high = wilson_interval(2, 4)
    assert f"95% Wilson interval {low * 100:.1f}%–{high * 100:.1f}%" in correctness
    assert "pass rate <b>50.0%</b> (2 of 4)" in correctness
    assert "mean score <b>0.550</b>, 95% t interval" in correctness
    bars = [int(c) for c in re.findall(r'<rect class="bar[^"]*"[^>]*data-count="(\d+)"', correctness)]
    assert bars == [0, 0, 1, 0, 1, 0, 1, 0, 0, 1]  # 0.2, 0.4, 0.6, 1.0
    assert "1 unstable" in correctness
    assert "1 judge error(s)" in cards[1][1]


def test_fragment_filters_and_sorts(chromium: str, tmp_path: Path) -> None:
    path = write_report(tmp_path)
    page = load(chromium, tmp_path, path, "#filter=capital&failures=1&sort=score&dir=desc")
    shown = [r["cells"][0].rsplit("[", 1)[1] for r in page.visible]
    assert shown == ["capital-de]", "capital-es]"]  # failures mentioning "capital", highest score first
    assert page.texts["count"] == "Showing 2 of 6 cases"
    sorted_by = [h for h in page.headers if h.get("aria-sort")]
    assert [(h["data-key"], h["aria-sort"]) for h in sorted_by] == [("score", "descending")]
    # the DOM order is sorted too (hidden rows included): scores descending, the error last
    scores = [r["cells"][2].split()[0] for r in page.rows]
    assert scores == ["1.000", "0.800", "0.600", "0.400", "0.200", "error"]

    by_metric = load(chromium, tmp_path, path, "#metric=faithfulness&sort=test_id")
    assert [r["attrs"]["data-metric"] for r in by_metric.visible] == ["faithfulness", "faithfulness"]
    ids = [r["cells"][0] for r in by_metric.rows]
    assert ids == sorted(ids, key=str.lower)

    unstable = load(chromium, tmp_path, path, "#unstable=1")
    assert [r["cells"][0] for r in unstable.visible] == ["tests/test_qa.py::test_qa[capital-it]"]

    nothing = load(chromium, tmp_path, path, "#filter=%3Cno%20such%20thing%3E")
    assert nothing.visible == [] and nothing.texts["count"] == "Showing 0 of 6 cases"


def test_comparison_section_and_screenshot(chromium: str, tmp_path: Path) -> None:
    baseline = [(test_id, dict(r, score=1.0, passed=True) if r["score"] is not None else r) for test_id, r in RECORDS]
    comparison = compare(baseline, RECORDS)
    path = write_report(tmp_path, comparison=comparison)
    dom = run_chromium(chromium, tmp_path, path.as_uri(), "--dump-dom")
    section = re.search(r'<section id="comparison".*?</section>', dom, re.S)
    assert section is not None
    text = section.group(0)
    correctness = next(m for m in comparison.metrics if m.metric == "correctness")
    assert f'<td class="diff">{correctness.diff:+.3f}</td>' in text
    assert f'<td class="interval">{correctness.interval_text()}</td>' in text
    assert "pass → fail (2)" in text
    assert "tests/test_qa.py::test_qa[capital-de]" in text and "tests/test_qa.py::test_qa[capital-es]" in text
    assert "judge error (1)" in text
    assert "<title>QA suite &lt;v2&gt;</title>" in dom
    embedded = re.search(r'<script type="application/json" id="llmjudge-data">(.*?)</script>', dom, re.S)
    assert embedded is not None
    data = json.loads(embedded.group(1))
    assert data["comparison"]["metrics"][0]["metric"] == "correctness"
    assert data["records"][3]["reason"] == XSS_REASON

    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1280,1600",
                 "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    artifacts = os.environ.get("LLMJUDGE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "html-report.png")
        shutil.copy(path, Path(artifacts) / "html-report.html")


def test_metric_cards_render_the_run_summary_and_compute_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 4: the HTML report shows MetricSummary's intervals (the terminal's, JUnit's
    and markdown's), whether given the run's summary or results-file rows."""
    from pytest_llmjudge.report.collect import MetricSummary, RunSummary

    monkeypatch.setattr(MetricSummary, "pass_rate_interval", lambda self: (0.123, 0.456))
    monkeypatch.setattr(MetricSummary, "mean_interval", lambda self: (0.111, 0.222))
    rows = [{"test_id": test_id, **record} for test_id, record in RECORDS]
    for source in (RunSummary.from_records(RECORDS), rows):
        page = render_html(source)
        assert "95% Wilson interval 12.3%–45.6%" in page and "95% t interval 0.111–0.222" in page
