"""Issue 16 item 6: the terminal summary stays short (one table, the gates, at most 10 worst
failures; the rest behind -v), and -v runs that take a while show a count of judged verdicts."""

from __future__ import annotations

import re

import pytest
from conftest import QA_ROWS, LLMRun, summary_section

from pytest_llmjudge.report import progress

MANY = [dict(row, id=f"{row['id']}{k}") for k in range(4) for row in QA_ROWS]  # 12 of 24 fail


def test_short_summary_then_details_with_v(llm: LLMRun) -> None:
    llm.qa_suite(MANY)
    llm.run("--llm-save-baseline", "base.json")
    args = ("--llm-baseline", "base.json", "--llm-min-pass-rate", "correctness=0.9", "--llm-html", "r.html")
    lines = summary_section(llm.run(*args))
    assert lines[0].startswith("judge: openai:fake") and lines[1].startswith("judge tokens:")
    assert lines[2].startswith("metric ") and lines[3].startswith("correctness ")
    blocks = "\n".join(lines[4:]).split("\n\n")
    assert blocks[0].startswith("(pass rate: Wilson interval")
    assert blocks[1].splitlines() == [
        "FAILED gate: correctness pass rate >= 90.0%: MISSED (50.0%)",
        f"llmjudge baseline: no regression in 1 metric(s) against {llm.path / 'base.json'} (tolerance 0)",
    ]
    failures = blocks[2].splitlines()
    assert failures[0] == "lowest-scoring failures (10 of 12):" and len(failures) == 11
    assert blocks[3] == f"HTML report written to {llm.path / 'r.html'}"
    assert len(blocks) == 4  # nothing else: no comparison table

    verbose = "\n".join(summary_section(llm.run(*args, "-v")))
    assert re.search(r"^metric\s+paired\s+baseline\s+current", verbose, re.M)  # the comparison table


@pytest.mark.parametrize("verbose", [True, False])
def test_progress_count_in_verbose_runs(llm: LLMRun, monkeypatch: pytest.MonkeyPatch, verbose: bool) -> None:
    monkeypatch.setattr(progress, "AFTER_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    llm.qa_suite()
    result = llm.run("--llm-concurrency", "1", *(["-v"] if verbose else []))
    counts = [line for line in result.outlines if line.startswith("llm judge: ")]
    if not verbose:
        assert counts == []
        return
    assert counts[0].startswith("llm judge: 1 verdicts (1 passed, 0 failed, 0 judge errors), ")
    assert counts[-1].startswith("llm judge: 6 verdicts (3 passed, 3 failed, 0 judge errors), ")
    assert re.fullmatch(r"llm judge: .*, \d+\.\d verdicts/s", counts[-1])
    assert len(counts) == len(QA_ROWS)
    # pytest's own per-test lines are unchanged
    assert sum(1 for line in result.outlines if "PASSED [correctness=" in line) == 3


def test_no_progress_line_in_a_short_run(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("-v")
    assert not [line for line in result.outlines if line.startswith("llm judge: ")]
