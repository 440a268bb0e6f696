"""Issue 16 item 5: with pytest-html, each judged test's row shows metric, score, threshold and
reason, passing tests too, through pytest-html's public hooks."""

from __future__ import annotations

import html
import json
import re

import pytest
from conftest import QA_PASS, QA_ROWS, LLMRun

pytest.importorskip("pytest_html")


def _report_tests(path: str) -> dict[str, list[dict]]:
    """pytest-html 4 keeps its rows as JSON in the ``data-jsonblob`` attribute."""
    text = open(path, encoding="utf-8").read()
    blob = re.search(r'data-jsonblob="([^"]*)"', text)
    assert blob is not None
    return json.loads(html.unescape(blob.group(1)))["tests"]


@pytest.mark.parametrize("args", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_each_row_shows_the_verdicts(llm: LLMRun, args: list[str]) -> None:
    if args:
        pytest.importorskip("xdist")
    llm.qa_suite()
    llm.makepyfile("def test_plain():\n    assert True\n", name="test_plain")
    llm.run_subprocess("--html", "report.html", "--self-contained-html", "--llm-results", "results.jsonl", *args)
    rows = {r["test_id"]: r for r in llm.results()}
    tests = _report_tests(str(llm.path / "report.html"))
    assert len(tests) == len(QA_ROWS) + 1
    header = open(llm.path / "report.html", encoding="utf-8").read()
    assert "LLM verdicts" in header
    for nodeid, [entry] in tests.items():
        cells = entry["resultsTableRow"]
        [cell] = [c for c in cells if 'class="col-llm"' in c]
        if nodeid.endswith("test_plain"):
            assert cell == '<td class="col-llm"></td>'
            continue
        row = rows[nodeid]
        outcome = "passed" if row["passed"] else "failed"
        assert f"correctness {row['score']:.2f} (threshold 0.60) {outcome}" in cell
        assert html.escape(row["reason"]) in cell
        assert "LLM judge verdicts:" in entry["log"] and html.escape(row["reason"]) in entry["log"]
        assert (nodeid.split("[")[1][:-1] in QA_PASS) == row["passed"]


def test_reason_markup_is_escaped(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        def test_evil(assert_llm_score):
            assert_llm_score("x", input="q", expected="y", threshold=0.0)
        """)
    llm.server.script(json.dumps({"reason": "<img src=x onerror=alert(1)>", "score": 5}))
    llm.run("--html", "report.html", "--llm-concurrency", "1")
    [[entry]] = _report_tests(str(llm.path / "report.html")).values()
    [cell] = [c for c in entry["resultsTableRow"] if 'class="col-llm"' in c]
    assert "<img" not in cell and "&lt;img src=x onerror=alert(1)&gt;" in cell
    assert "<img" not in entry["log"]
