"""Issue 16 item 1: every results row carries what was judged (texts, dataset case, run
parameters); --llm-results-texts off drops the texts; compare and HTML show flipped cases' texts."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import QA_FAIL, QA_ROWS, LLMRun, short_id

import pytest_llmjudge

ROWS = [dict(row, category="geo" if row["id"] in ("capital", "river") else "science") for row in QA_ROWS]
SECRET = "sk-test-SECRET1234567890abcdef"


def _run_params(llm: LLMRun) -> dict[str, object]:
    return {"judge": "openai:fake", "model": "fake", "base_url_host": f"127.0.0.1:{llm.server.port}",
            "temperature": 0.0, "samples": 1, "seed": None, "plugin_version": pytest_llmjudge.__version__}


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_jsonl_rows_carry_texts_case_and_run(llm: LLMRun, concurrency: str) -> None:
    llm.qa_suite(ROWS)
    llm.run("--llm-results", "results.jsonl", "--llm-concurrency", concurrency)
    rows = {short_id(r["test_id"]): r for r in llm.results()}
    assert set(rows) == {r["id"] for r in ROWS}
    for source in ROWS:
        row = rows[source["id"]]
        assert row["input"] == source["input"]
        assert row["output"] == source["answer"]
        assert row["expected"] == source["expected_output"]
        assert row["context"] is None and row["criteria"] is None
        assert row["case"] == {"id": source["id"], "input": source["input"],
                               "expected_output": source["expected_output"], "answer": source["answer"],
                               "category": source["category"]}
        assert row["run"] == _run_params(llm)


def test_csv_has_case_and_run_columns(llm: LLMRun) -> None:
    llm.qa_suite(ROWS)
    llm.makepyfile(
        """
        def test_plain(assert_llm_score):
            assert_llm_score("Paris.", metric="criteria", input="Capital of France?",
                             criteria="names Paris", context=["France is in Europe.", "Paris is its capital."])
        """, name="test_plain")
    llm.run("--llm-results", "results.csv", "--llm-repeat", "2", "--llm-concurrency", "1")
    with open(llm.path / "results.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = {short_id(r["test_id"]): r for r in reader}
    for column in ("input", "output", "expected", "context", "criteria", "case.id", "case.category",
                   "case.answer", "run.judge", "run.model", "run.base_url_host", "run.plugin_version"):
        assert column in header
    assert "case.case" not in header and header.count("case.id") == 1
    boil = rows["boil"]
    assert boil["case.id"] == "boil" and boil["case.category"] == "science"
    assert boil["output"] == "It boils when it is hot." and boil["case.answer"] == boil["output"]
    assert boil["run.model"] == "fake" and boil["run.samples"] == "2" and boil["run.temperature"] == "0.7"
    plain = rows["test_plain"]
    assert plain["criteria"] == "names Paris" and plain["case.id"] == "" and plain["case.category"] == ""
    assert plain["context"] == "France is in Europe.\n\nParis is its capital."


def test_texts_off_keeps_only_the_case_id(llm: LLMRun) -> None:
    llm.qa_suite(ROWS)
    llm.run("--llm-results", "results.jsonl", "--llm-results-texts", "off")
    for row in llm.results():
        assert row["input"] is None and row["output"] is None and row["expected"] is None
        assert row["case"] == {"id": short_id(row["test_id"])}
    llm.run("--llm-results", "results.csv", "-o", "llm_results_texts=off")
    header = (llm.path / "results.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert [c for c in header if c.startswith("case.")] == ["case.id"]
    text = (llm.path / "results.csv").read_text(encoding="utf-8")
    assert "Paris" not in text and "Jupiter" not in text


def test_bad_texts_value_is_a_usage_error(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-results-texts", "maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "expected on or off" in result.stderr.str()


def test_texts_are_redacted(llm: LLMRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    llm.makepyfile(
        f"""
        def test_leak(assert_llm_score):
            assert_llm_score("the key is {SECRET}", input="what is the key?", expected="no key",
                             threshold=0.0)
        """)
    llm.run("--llm-results", "results.jsonl")
    [row] = llm.results()
    assert row["output"] == "the key is ***"
    assert SECRET not in (llm.path / "results.jsonl").read_text(encoding="utf-8")


def test_xdist_csv_has_one_header(llm: LLMRun) -> None:
    pytest.importorskip("xdist")
    llm.qa_suite(ROWS)
    llm.run_subprocess("-n", "2", "--llm-results", "results.csv", "-p", "no:randomly")
    lines = (llm.path / "results.csv").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("run_id,") for line in lines) == 1
    rows = llm.results("results.csv")
    assert len(rows) == len(ROWS)
    assert {r["case.category"] for r in rows} == {"geo", "science"}
    assert len({r["run_id"] for r in rows}) == 1


def test_compare_and_html_show_flipped_texts_side_by_side(llm: LLMRun) -> None:
    llm.qa_suite(ROWS)
    llm.run("--llm-results", "base.jsonl", "--llm-save-baseline", "base.json")
    # the application changed: "boil" now answers right, "capital" wrong
    changed = [dict(r) for r in ROWS]
    for row in changed:
        if row["id"] == "boil":
            row["answer"] = "Water boils at 100 degrees Celsius at sea level."
        if row["id"] == "capital":
            row["answer"] = "Lyon, I think."
    llm.qa_suite(changed)
    llm.run("--llm-results", "current.jsonl", "--llm-baseline", "base.json", "--llm-html", "report.html")
    out = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "compare", "base.jsonl", "current.jsonl"],
                         cwd=llm.path, capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1), out.stderr
    text = out.stdout
    assert "correctness pass->fail: test_qa.py::test_qa[capital]" in text
    block = text[text.index("pass->fail: test_qa.py::test_qa[capital]"):]
    assert block.index("baseline: 0.92 passed") < block.index("current:  0.08 failed")
    assert "The capital of France is Paris." in block and "Lyon, I think." in block
    assert "What is the capital of France?" in block
    md = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "compare", "base.json", "current.jsonl",
                         "--format", "markdown"], cwd=llm.path, capture_output=True, text=True, check=False).stdout
    assert "Flipped cases, side by side" in md
    [line] = [x for x in md.splitlines() if x.startswith("| ") and "test_qa[boil]" in x]
    assert "It boils when it is hot." in line and "Water boils at 100 degrees" in line
    html = (llm.path / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table id="flipped">'):]
    table = table[:table.index("</table>")]
    assert table.count('<tr class="flip"') == 2
    assert "Lyon, I think." in table and "The capital of France is Paris." in table
    assert QA_FAIL  # the suite still has failures: the report is of a real run


def test_baseline_file_keeps_texts(llm: LLMRun) -> None:
    llm.qa_suite(ROWS)
    llm.run("--llm-save-baseline", "base.json")
    cases = json.loads((llm.path / "base.json").read_text(encoding="utf-8"))["cases"]
    [boil] = [c for c in cases if c["test_id"].endswith("[boil]")]
    assert boil["texts"]["output"] == "It boils when it is hot."
    assert boil["texts"]["reason"].startswith("overlap")
