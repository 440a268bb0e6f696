"""Issue 16 item 3: judge tokens, calls, cached calls saved and cost (with ``llm_prices``) in the
summary, JUnit suite properties, the results file's run record and the HTML report."""

from __future__ import annotations

import pytest
from conftest import QA_ROWS, LLMRun, suite_props, summary_section

from pytest_llmjudge.report.results_file import read_result_rows
from pytest_llmjudge.report.usage import money

PRICES = "[pytest]\nllm_prices =\n    fake = 2.5 10\n    gpt-4o = 5 15\n"


def _usage_line(result: pytest.RunResult) -> str:
    [line] = [x for x in summary_section(result) if x.startswith("judge tokens:")]
    return line


def _expected_cost(rows: list[dict]) -> float:
    prompt = sum(int(r["prompt_tokens"]) for r in rows)
    completion = sum(int(r["completion_tokens"]) for r in rows)
    return (prompt * 2.5 + completion * 10) / 1_000_000


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_tokens_and_cost_everywhere_then_saved_by_the_cache(llm: LLMRun, suffix: str) -> None:
    llm.pytester.makeini(PRICES)
    llm.qa_suite()
    results = f"results.{suffix}"
    first = llm.run("--llm-results", results, "--junitxml", "junit.xml", "--llm-html", "report.html", cache="rw")
    rows = llm.results(results)
    prompt = sum(int(r["prompt_tokens"]) for r in rows)
    completion = sum(int(r["completion_tokens"]) for r in rows)
    assert prompt > 0 and completion > 0
    cost = _expected_cost(rows)
    assert _usage_line(first) == (f"judge tokens: {prompt:,} prompt / {completion:,} completion | "
                                  f"cached calls saved: 0 | cost: {money(cost)} (cache saved $0)")
    props = suite_props(llm.junit())
    assert props["llm.judge_calls"] == "6" and props["llm.cached_calls_saved"] == "0"
    assert props["llm.prompt_tokens"] == str(prompt) and props["llm.completion_tokens"] == str(completion)
    assert float(props["llm.cost_usd"]) == pytest.approx(cost)
    [run] = [r for r in read_result_rows(llm.path / results, run_records=True) if r["record"] == "run"]
    assert int(run["verdicts"]) == len(QA_ROWS) and int(run["judge_calls"]) == 6
    assert int(run["prompt_tokens"]) == prompt and float(run["cost_usd"]) == pytest.approx(cost)
    html = (llm.path / "report.html").read_text(encoding="utf-8")
    assert f"judge tokens: {prompt:,} prompt" in html and f"cost: {money(cost)}" in html

    # the same suite again: every verdict comes from the cache
    second = llm.run("--llm-results", results, "--junitxml", "junit.xml", cache="rw")
    assert _usage_line(second) == (f"judge tokens: 0 prompt / 0 completion | cached calls saved: 6 | "
                                   f"cost: $0 (cache saved {money(cost)})")
    props = suite_props(llm.junit())
    assert props["llm.judge_calls"] == "0" and props["llm.cached_calls_saved"] == "6"
    assert float(props["llm.cost_saved_usd"]) == pytest.approx(cost)
    assert props["llm.saved_prompt_tokens"] == str(prompt)


def test_without_prices_no_cost_and_unpriced_judges_named(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-results", "results.jsonl")
    line = _usage_line(result)
    assert line.endswith("cached calls saved: 0") and "cost" not in line
    [run] = [r for r in read_result_rows(llm.path / "results.jsonl", run_records=True) if r.get("record") == "run"]
    assert run["cost_usd"] is None
    llm.pytester.makeini("[pytest]\nllm_prices = gpt-4o = 5 15\n")
    line = _usage_line(llm.run())
    assert "cost: $0 (cache saved $0); no price for openai:fake" in line


@pytest.mark.parametrize("line", ["fake = 1", "fake 1 2", "fake = one two", "= 1 2", "fake = -1 2"])
def test_bad_price_line_is_a_usage_error(llm: LLMRun, line: str) -> None:
    llm.pytester.makeini(f"[pytest]\nllm_prices = {line}\n")
    llm.qa_suite()
    result = llm.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "llm_prices" in result.stderr.str() and "INPUT_PER_1M OUTPUT_PER_1M" in result.stderr.str()


def test_run_record_is_not_a_verdict_for_compare(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-results", "base.csv")
    result = llm.run("--llm-baseline", "base.csv", "-v")
    assert "no regression in 1 metric(s)" in result.stdout.str()
    assert "(6 verdicts)" in result.stdout.str()
