"""Issue 16 item 4: the markdown summary in $GITHUB_STEP_SUMMARY (appended) and --llm-markdown,
escaped so that no judged text breaks a table or injects markup."""

from __future__ import annotations

import json
import re

import pytest
from conftest import QA_FAIL, LLMRun

from pytest_llmjudge.report.markdown import MAX_FAILURES, md_cell

HOSTILE_REASON = ("bad | answer\nsecond line <script>alert(1)</script> ![pixel](http://evil.example/p.png) "
                  "[click](javascript:alert(1)) @everyone **bold** `code` ~~gone~~ &amp;")


def _tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def _columns(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_step_summary_is_appended_and_markdown_file_written(llm: LLMRun, monkeypatch: pytest.MonkeyPatch) -> None:
    step = llm.path / "step_summary.md"
    step.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    llm.qa_suite()
    result = llm.run("--llm-markdown", "out/summary.md", "--llm-min-pass-rate", "correctness=0.9")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = (llm.path / "out" / "summary.md").read_text(encoding="utf-8")
    assert step.read_text(encoding="utf-8") == "earlier step\n\n" + text
    assert text.startswith("### LLM judge summary")
    [table, failures] = _tables(text)
    assert table[0].startswith("| metric | cases | passed | pass rate")
    assert table[2].startswith("| correctness | 6 | 3 | 50% [")
    assert "- ❌ correctness pass rate &gt;= 90.0%: MISSED (50.0%)" in text
    assert failures[0] == "| test | metric | score | reason |"
    assert {re.search(r"\[(\w+)\]", row).group(1) for row in failures[2:]} == QA_FAIL  # type: ignore[union-attr]
    assert "overlap" in failures[2]
    assert "markdown summary written to" in result.stdout.str()


def test_no_step_summary_without_verdicts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    step = pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest_inprocess("--llm-cache-mode", "off").assert_outcomes(passed=1)
    assert not step.exists()


def test_hostile_texts_cannot_break_tables_or_inject_markup(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_evil(assert_llm_score, n):
            assert_llm_score("x", input="q", expected="y", threshold=0.9)
        """)
    llm.server.script(*[json.dumps({"reason": HOSTILE_REASON, "score": 1})] * 12)
    result = llm.run("--llm-markdown", "summary.md", "--llm-concurrency", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = (llm.path / "summary.md").read_text(encoding="utf-8")
    for table in _tables(text):
        assert len({_columns(line) for line in table}) == 1, table
    [_, failures] = _tables(text)
    assert len(failures) == 2 + MAX_FAILURES  # at most 10 of the 12 failures
    assert "(10 of 12)" in text
    for bad in ("<script", "![pixel]", "[click](", "@everyone", "**bold**", "`code`", "~~gone~~"):
        assert bad not in text, bad
    assert "&lt;script&gt;" in text and "second line" in text
    assert "&amp;amp;" in text  # an entity in a reason is shown, not interpreted


def test_md_cell_escapes() -> None:
    assert md_cell("a | b\nc") == "a \\| b c"
    assert md_cell("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert md_cell("![x](y) [l](u) @team *e* _u_") == "\\!\\[x\\](y) \\[l\\](u) &#64;team \\*e\\* \\_u\\_"
    assert md_cell("x" * 50, limit=10) == "x" * 9 + "…"
