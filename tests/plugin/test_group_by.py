"""Issue 16 item 2: breakdown by a dataset column (--llm-group-by, ini llm_group_by, the
llm_dataset marker's group_by) in the terminal summary, JUnit, markdown, HTML and compare."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import LLMRun, suite_props, summary_section, write_jsonl

QUESTIONS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Which planet is the largest in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("At what temperature does water boil at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("What is the speed of light?", "Light travels at about 300000 kilometres per second in vacuum."),
    ("What gas do plants absorb?", "Plants absorb carbon dioxide from the air."),
]


def dataset(right: int = 6, wrong: int = 6, tiny: int = 2) -> list[dict[str, str]]:
    """``easy`` answered right, ``hard`` wrong, ``tiny`` (too few to test) half and half;
    ``lang`` takes 8 values, one of them (``xx``) holding every wrong answer."""
    rows = []
    for i in range(right + wrong + tiny):
        question, reference = QUESTIONS[i % len(QUESTIONS)]
        if i < right:
            difficulty, answer = "easy", reference
        elif i < right + wrong:
            difficulty, answer = "hard", "No idea, sorry."
        else:
            difficulty, answer = "tiny", reference if i % 2 else "No idea, sorry."
        lang = "xx" if difficulty == "hard" else f"l{i % 7}"
        rows.append({"id": f"q{i:02d}", "input": question, "expected_output": reference, "answer": answer,
                     "difficulty": difficulty, "lang": lang})
    return rows


TEST = '''
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id"{marker})
def test_qa(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)
'''


def _breakdown(result: pytest.RunResult) -> list[list[str]]:
    lines = summary_section(result)
    start = next(i for i, line in enumerate(lines) if line.startswith("breakdown by"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("("):
            break
        rows.append(line.split())
    return rows


def test_terminal_junit_and_markdown_breakdown(llm: LLMRun) -> None:
    llm.qa_suite(dataset(), test=TEST.format(marker=', group_by="difficulty"'))
    result = llm.run("--junitxml", "junit.xml", "--llm-markdown", "summary.md", "--llm-soft", "--llm-html", "r.html")
    rows = {r[1]: r for r in _breakdown(result)}
    assert set(rows) == {"easy", "hard", "tiny"}
    assert rows["easy"][:5] == ["difficulty", "easy", "correctness", "6", "100%"]
    assert rows["easy"][-1] == "higher" and rows["hard"][-1] == "lower"
    assert " ".join(rows["tiny"]).endswith("n<5, not tested")
    props = suite_props(llm.junit())
    assert props["llm.correctness.group.difficulty.easy.n"] == "6"
    assert props["llm.correctness.group.difficulty.hard.pass_rate"] == "0.0000"
    assert props["llm.correctness.group.difficulty.tiny.vs_whole"] == "n<5, not tested"
    markdown = (llm.path / "summary.md").read_text(encoding="utf-8")
    assert "**Breakdown by difficulty**" in markdown
    assert "| difficulty | hard | correctness | 6 | 0% [" in markdown
    page = (llm.path / "r.html").read_text(encoding="utf-8")
    table = page[page.index('<table class="groups" data-column="difficulty">'):]
    table = table[:table.index("</table>")]
    assert '<tr class="higher"><td>difficulty</td><td>easy</td>' in table
    assert '<tr class="lower"><td>difficulty</td><td>hard</td>' in table
    assert page.count('<figure class="multiple"') == 3 and 'data-group="tiny"' in page


def test_many_groups_show_only_those_that_differ_unless_verbose(llm: LLMRun) -> None:
    llm.qa_suite(dataset())
    llm.pytester.makeini("[pytest]\nllm_group_by =\n    lang\n")
    quiet = _breakdown(llm.run("--llm-soft"))
    assert [r[1] for r in quiet] == ["xx"] and quiet[0][-1] == "lower"
    assert any("more group rows" in line for line in summary_section(llm.run("--llm-soft")))
    verbose = _breakdown(llm.run("--llm-soft", "-v"))
    assert len(verbose) == 8


def test_cli_option_and_missing_marker_column(llm: LLMRun) -> None:
    llm.qa_suite(dataset(), test=TEST.format(marker=""))
    rows = _breakdown(llm.run("--llm-soft", "--llm-group-by", "difficulty", "--llm-group-by", "nope"))
    assert {r[0] for r in rows} == {"difficulty"}  # a column no case has is no group
    llm.qa_suite(dataset(), test=TEST.format(marker=', group_by="nope"'))
    result = llm.run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*group_by column(s) nope not in the dataset; its columns: *difficulty*"])


def test_compare_per_group_with_holm_correction(llm: LLMRun) -> None:
    rows = dataset(right=16, wrong=0, tiny=0)
    for row in rows:
        row["difficulty"] = "easy" if int(row["id"][1:]) < 8 else "hard"
    write_jsonl(llm.path / "qa.jsonl", rows)
    llm.pytester.makepyfile(test_qa=TEST.format(marker=', group_by="difficulty"'))
    llm.run("--llm-results", "base.jsonl", "--llm-soft")
    for row in rows:  # the hard group's answers break
        if row["difficulty"] == "hard":
            row["answer"] = "No idea, sorry."
    write_jsonl(llm.path / "qa.jsonl", rows)
    result = llm.run("--llm-results", "current.jsonl", "--llm-soft", "--llm-baseline", "base.jsonl", "-v")
    out = result.stdout.str()
    assert "per group (Holm-corrected" in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the hard group regressed (soft: no test failed)
    cli = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "compare", "base.jsonl", "current.jsonl",
                          "--group-by", "difficulty"], cwd=llm.path, capture_output=True, text=True, check=False)
    text = cli.stdout
    [hard] = [line for line in text.splitlines() if line.startswith("difficulty=hard")]
    [easy] = [line for line in text.splitlines() if line.startswith("difficulty=easy")]
    assert "p(Holm)=0.0156" in hard and "8 paired" in hard and "REGRESSED" in hard
    assert "no significant change" in easy and cli.returncode == 1
    md = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "compare", "base.jsonl", "current.jsonl",
                         "--group-by", "difficulty", "--format", "markdown"], cwd=llm.path, capture_output=True,
                        text=True, check=False).stdout
    assert "Holm" in md and "| difficulty | hard | correctness |" in md


def test_breakdown_tokens_and_markdown_under_xdist(llm: LLMRun) -> None:
    """-n 2: the controller aggregates every worker's records into the same breakdown and usage."""
    pytest.importorskip("xdist")
    llm.qa_suite(dataset(), test=TEST.format(marker=', group_by="difficulty"'))
    result = llm.run_subprocess("-n", "2", "--llm-soft", "--llm-results", "results.jsonl", "--llm-markdown", "s.md")
    rows = {r[1]: r for r in _breakdown(result)}
    assert rows["easy"][3] == "6" and rows["hard"][3] == "6" and rows["easy"][-1] == "higher"
    results = llm.results()
    prompt = sum(r["prompt_tokens"] for r in results)
    completion = sum(r["completion_tokens"] for r in results)
    assert f"judge tokens: {prompt:,} prompt / {completion:,} completion" in result.stdout.str()
    assert "| difficulty | easy | correctness | 6 | 100% [" in (llm.path / "s.md").read_text(encoding="utf-8")
