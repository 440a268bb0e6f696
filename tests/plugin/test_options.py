"""Issues 3 and 5: every option works as a CLI flag and as the same-named ini key; bad values
are usage errors with a clear message."""

from __future__ import annotations

import pytest
from conftest import QA_FAIL, QA_PASS, QA_ROWS, LLMRun, outcomes, summary_section


def test_ini_options_work_like_the_cli_ones(llm: LLMRun) -> None:
    llm.qa_suite(test=QA_TEST_DEFAULT_THRESHOLD)
    llm.pytester.makeini(
        f"""
        [pytest]
        llm_judge = openai:fake
        llm_base_url = {llm.server.url}
        llm_threshold = 0.6
        llm_results = out/results.csv
        llm_max_retries = 1
        llm_timeout = 5
        llm_concurrency = 1
        llm_cache_mode = off
        llm_soft = true
        llm_min_pass_rate =
            correctness=0.9
            *=0.1
        """
    )
    result = llm.pytester.runpytest_inprocess()
    assert outcomes(result) == {"passed": QA_PASS | QA_FAIL}  # soft
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the correctness=0.9 gate
    gates = [line for line in summary_section(result) if "gate" in line]
    assert "FAILED gate: correctness pass rate >= 90.0%: MISSED (50.0%)" in gates
    assert "gate: correctness pass rate >= 10.0%: met (50.0%)" in gates
    rows = llm.results("out/results.csv")
    assert len(rows) == len(QA_ROWS)
    assert {r["threshold"] for r in rows} == {"0.6"}  # llm_threshold is the default threshold
    assert all('"concurrency": 1' in r["settings"] and '"max_retries": 1' in r["settings"] for r in rows)
    assert llm.server.max_in_flight == 1
    assert not (llm.path / ".llmjudge_cache").exists()  # llm_cache_mode = off

    # the command line wins over the ini file
    llm.server.reset()
    result = llm.pytester.runpytest_inprocess("--llm-threshold", "0.1", "--llm-results", "cli.jsonl",
                                              "--llm-min-pass-rate", "*=0.5")
    assert result.ret == pytest.ExitCode.OK
    assert {r["threshold"] for r in llm.results("cli.jsonl")} == {0.1}
    assert [line for line in summary_section(result) if "gate" in line] == [
        "gate: correctness pass rate >= 50.0%: met (83.3%)"]  # river scores 0.08


QA_TEST_DEFAULT_THRESHOLD = '''
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_qa(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"])
'''


def test_ini_cache_dir_and_mode(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.pytester.makeini(
        f"""
        [pytest]
        llm_judge = openai:fake
        llm_base_url = {llm.server.url}
        llm_cache_mode = rw
        llm_cache_dir = verdicts
        """
    )
    llm.pytester.runpytest_inprocess()
    assert (llm.path / "verdicts" / "verdicts.sqlite3").exists()
    first = llm.server.request_count
    llm.pytester.runpytest_inprocess()
    assert llm.server.request_count == first  # read from the ini-configured cache


BAD_CLI = [
    (["--llm-threshold", "1.5"], "expected a number between 0 and 1, got '1.5'"),
    (["--llm-threshold", "high"], "expected a number between 0 and 1, got 'high'"),
    (["--llm-concurrency", "0"], "expected a positive integer, got '0'"),
    (["--llm-max-retries", "-1"], "expected an integer >= 0, got '-1'"),
    (["--llm-timeout", "0"], "expected a positive number, got '0'"),
    (["--llm-cache-mode", "sometimes"], "invalid cache mode 'sometimes'"),
    (["--llm-min-pass-rate", "correctness"], "invalid --llm-min-pass-rate 'correctness'"),
    (["--llm-min-pass-rate", "correctness=2"], "invalid --llm-min-pass-rate 'correctness=2'"),
    (["--llm-results", "out.txt"], "--llm-results out.txt: use a .jsonl or .csv file name"),
]


@pytest.mark.parametrize("args,message", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


BAD_INI = [
    ("llm_threshold = 7", "ini option llm_threshold: expected a number between 0 and 1, got '7'"),
    ("llm_concurrency = many", "ini option llm_concurrency: expected a positive integer, got 'many'"),
    ("llm_cache_mode = always", "ini option llm_cache_mode: invalid cache mode 'always'"),
    ("llm_min_pass_rate = correctness:0.9", "ini option llm_min_pass_rate: invalid --llm-min-pass-rate"),
    ("llm_results = out.xml", "use a .jsonl or .csv file name"),
]


@pytest.mark.parametrize("line,message", BAD_INI, ids=[line.split()[0] for line, _ in BAD_INI])
def test_bad_ini_values_are_usage_errors(pytester: pytest.Pytester, line: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{line}\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_judge_spec_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_x(assert_llm_score):
            assert_llm_score("a", expected="a")
        """
    )
    result = pytester.runpytest_inprocess("--llm-judge", "gpt-4o", "--llm-cache-mode", "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # before any test runs (issue 15 item 12)
    result.stderr.fnmatch_lines(["*invalid judge spec 'gpt-4o' (did you mean openai:gpt-4o?): use BACKEND:MODEL*"])
    result = pytester.runpytest_inprocess("--llm-judge", "anthropic:claude", "--llm-cache-mode", "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown judge backend 'anthropic'*"])


def test_openai_judge_without_key_or_base_url_says_what_to_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_x(assert_llm_score):
            assert_llm_score("a", expected="a")
        """
    )
    result = pytester.runpytest_inprocess("--llm-judge", "openai:gpt-4o-mini", "--llm-cache-mode", "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # one usage error, not one failure per test
    result.stderr.fnmatch_lines(["*needs an API key: set the OPENAI_API_KEY environment variable*"])


def test_base_url_from_environment(llm: LLMRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm.server.url)
    llm.qa_suite()
    result = llm.pytester.runpytest_inprocess("--llm-judge", "openai:fake", "--llm-cache-mode", "off")
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}
    assert llm.server.request_count == len(QA_ROWS)
