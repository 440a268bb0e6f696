"""Issue 3: what a run reports — the terminal summary, JUnit XML (xunit1 and xunit2), the
results file, pass-rate gates, --llm-soft — and that API keys never leak into any of it."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pytest
from conftest import (
    QA_FAIL,
    QA_PASS,
    QA_ROWS,
    LLMRun,
    case_properties,
    case_system_out,
    outcomes,
    short_id,
    suite_props,
    summary_section,
    summary_table,
)

SECRET = "sk-test-SECRET1234567890abcdef"


# -- terminal ---------------------------------------------------------------------------
def test_summary_section_contents(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}
    lines = summary_section(result)
    assert lines[0].startswith("judge: openai:fake")
    assert "verdicts: 6" in lines[0] and "from cache: 0" in lines[0] and "judge calls: 6" in lines[0]
    row = summary_table(result)["correctness"]
    assert row["cases"] == "6" and row["passed"] == "3" and row["judge errors"] == "0"
    assert row["pass rate"].startswith("50")
    assert row["threshold"] == "0.60"
    mean = sum(r["score"] for r in llm_rows(llm, result)) / 6
    assert row["mean score"].split()[0] == f"{mean:.2f}" or row["mean score"].split()[0] == f"{mean:.3f}"
    # then the lowest-scoring failed cases: test id, score and the judge's reason, lowest first
    start = next(i for i, line in enumerate(lines) if line.startswith("lowest-scoring failures"))
    failed = [line.split() for line in lines[start + 1:start + 4]]
    assert {short_id(f[0]) for f in failed} == QA_FAIL
    scores = [float(f[1].split("=")[1]) for f in failed]
    assert scores == sorted(scores)
    assert all(" ".join(f[2:]).startswith("overlap ") for f in failed)


def llm_rows(llm: LLMRun, result: pytest.RunResult) -> list[dict]:
    """Verdict records as the reports carried them."""
    rows = []
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        rows += getattr(report, "llmjudge_records", None) or []
    return rows


def test_no_summary_without_verdicts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_inprocess("--llm-cache-mode", "off")
    result.assert_outcomes(passed=1)
    assert "llm judge summary" not in result.stdout.str()


# -- JUnit XML --------------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_junit_xunit1_testcase_properties(llm: LLMRun, concurrency: str) -> None:
    llm.qa_suite()
    llm.run("--junitxml", "junit.xml", "-o", "junit_family=xunit1", "--llm-results", "results.jsonl",
            "--llm-concurrency", concurrency)
    root = llm.junit()
    props = case_properties(root)
    rows = {short_id(r["test_id"]): r for r in llm.results()}
    assert len(props) == len(QA_ROWS)
    for name, values in props.items():
        row = rows[short_id(name)]
        assert values["llm.correctness.score"] == f"{row['score']:.4f}"
        assert values["llm.correctness.threshold"] == "0.6000"
        assert values["llm.correctness.passed"] == str(row["passed"]).lower()
        assert values["llm.correctness.reason"] == row["reason"]
        assert values["llm.correctness.judge"] == "openai:fake"
        assert values["llm.correctness.cached"] == "false"
    suite = suite_props(root)
    assert suite["llm.correctness.n"] == "6"
    assert suite["llm.correctness.pass_rate"] == "0.5000"
    assert float(suite["llm.correctness.mean"]) == pytest.approx(
        sum(r["score"] for r in rows.values()) / 6, abs=1e-4)
    assert suite["llm.correctness.judge_errors"] == "0"
    assert suite["llm.judge"] == "openai:fake"


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_junit_xunit2_system_out_and_no_testcase_properties(llm: LLMRun, concurrency: str) -> None:
    llm.qa_suite()
    llm.run("--junitxml", "junit.xml", "--llm-results", "results.jsonl",  # xunit2 is the default
            "--llm-concurrency", concurrency)
    root = llm.junit()
    for case in root.iter("testcase"):
        assert case.find("properties") is None
    out = case_system_out(root)
    rows = {short_id(r["test_id"]): r for r in llm.results()}
    assert {short_id(n) for n in out} == {r["id"] for r in QA_ROWS}
    for name, values in out.items():
        row = rows[short_id(name)]
        assert values["llm.correctness.score"] == f"{row['score']:.4f}"
        assert values["llm.correctness.passed"] == str(row["passed"]).lower()
        assert values["llm.correctness.reason"] == row["reason"]
        assert values["llm.correctness.threshold"] == "0.6000"
    assert suite_props(root)["llm.correctness.n"] == "6"
    # the failure message of a low score is the LLMScoreError's
    failures = {short_id(c.get("name", "")): c.find("failure") for c in root.iter("testcase")}
    for test_id in QA_FAIL:
        message = failures[test_id].get("message", "")
        assert message.startswith("pytest_llmjudge.errors.LLMScoreError: correctness score")
        assert "judge: openai:fake" in message and "reason: overlap" in message
    assert all(failures[t] is None for t in QA_PASS)


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_junit_stays_valid_xml_with_control_characters_in_reason(llm: LLMRun, family: str) -> None:
    llm.makepyfile(
        """
        def test_bell(assert_llm_score):
            assert_llm_score("Paris.", input="Capital?", expected="Paris.", threshold=0.9)

        def test_escape(assert_llm_score):
            assert_llm_score("Paris.", input="Capital?", expected="Paris.", threshold=0.1)
        """
    )
    llm.server.script(
        json.dumps({"reason": "ding\x07 <&> \"quoted\" \x00nul", "score": 1}),
        json.dumps({"reason": "colour \x1b[31mred\x1b[0m \ud7ff ok", "score": 5}),
    )
    result = llm.run("--junitxml", "junit.xml", "-o", f"junit_family={family}", "--llm-concurrency", "1")
    assert outcomes(result) == {"failed": {"test_bell"}, "passed": {"test_escape"}}
    raw = (llm.path / "junit.xml").read_bytes()
    assert b"\x07" not in raw and b"\x1b" not in raw and b"\x00" not in raw
    root = ET.fromstring(raw)  # parses: valid XML
    values = case_properties(root) if family == "xunit1" else case_system_out(root)
    assert "ding" in values["test_bell"]["llm.correctness.reason"]
    assert "<&>" in values["test_bell"]["llm.correctness.reason"]
    assert "red" in values["test_escape"]["llm.correctness.reason"]
    failure = next(c for c in root.iter("testcase") if c.get("name") == "test_bell").find("failure")
    assert failure is not None and "ding" in failure.get("message", "")


# -- results file ----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_results_file_one_row_per_verdict_including_judge_errors(llm: LLMRun, suffix: str) -> None:
    llm.qa_suite()
    llm.makepyfile(
        """
        def test_two_metrics(assert_llm_score):
            assert_llm_score("Paris is the capital of France.", input="What is the capital of France?",
                             expected="Paris is the capital of France.")
            assert_llm_score("Paris is the capital of France.", metric="answer_relevancy",
                             input="What is the capital of France?")

        def test_judge_error(assert_llm_score):
            assert_llm_score("x", input="q", expected="y", threshold=0.1)
        """,
        name="test_more",
    )
    llm.server.script("not json", "still not json")
    result = llm.run("--llm-results", f"results.{suffix}", "--llm-concurrency", "1", "-p", "no:randomly",
                     "test_more.py", "test_qa.py")
    rows = llm.results(f"results.{suffix}")
    # the scripted garbage went to the first request, test_two_metrics' correctness: its
    # JudgeError stops that test before its second metric
    assert outcomes(result)["failed"] == {"test_two_metrics", "test_judge_error"} | QA_FAIL
    assert len(rows) == 1 + 1 + len(QA_ROWS)
    [error_row] = [r for r in rows if r["error"]]
    assert error_row["test_id"] == "test_more.py::test_two_metrics"
    assert "JudgeError" in error_row["error"] and error_row["metric"] == "correctness"
    assert str(error_row["passed"]).lower() == "false"
    judged = [r for r in rows if not r["error"]]
    run_ids = {r["run_id"] for r in rows}
    assert len(run_ids) == 1 and len(next(iter(run_ids))) >= 8
    for row in judged:
        assert row["timestamp"] and row["judge"] == "openai:fake"
        assert 0.0 <= float(row["score"]) <= 1.0
        assert row["reason"]
        assert float(row["latency_s"]) >= 0
        assert int(row["total_tokens"]) > 0
        settings = row["settings"] if suffix == "jsonl" else json.loads(row["settings"])
        assert settings["judge"] == "openai:fake" and settings["concurrency"] == 1
    qa = {short_id(r["test_id"]): r for r in judged if r["test_id"].startswith("test_qa.py")}
    assert {k for k, r in qa.items() if str(r["passed"]).lower() == "true"} == QA_PASS
    if suffix == "csv":
        header = (llm.path / "results.csv").read_text().splitlines()[0].split(",")
        assert header[:4] == ["run_id", "timestamp", "test_id", "metric"]
        assert "raw_score" in header and "threshold" in header and "error" in header


def test_results_file_is_rewritten_by_each_run(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-results", "out/results.csv")
    llm.run("--llm-results", "out/results.csv")
    with open(llm.path / "out" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["record"] for r in rows] == ["verdict"] * len(QA_ROWS) + ["run"]  # the run record is last


# -- gates and soft mode -------------------------------------------------------------
def test_min_pass_rate_gate_fails_the_session(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-soft", "--llm-min-pass-rate", "correctness=0.9")
    assert outcomes(result) == {"passed": QA_PASS | QA_FAIL}  # soft: no test fails
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_section(result)
    [gate] = [line for line in lines if "gate" in line]
    assert gate.startswith("FAILED gate: correctness pass rate >= 90.0%: MISSED (50.0%)")


def test_min_pass_rate_gate_met_passes(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-soft", "--llm-min-pass-rate", "*=0.1")
    assert result.ret == pytest.ExitCode.OK
    [gate] = [line for line in summary_section(result) if "gate" in line]
    assert gate == "gate: correctness pass rate >= 10.0%: met (50.0%)"


def test_several_gates_and_percent_form(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-soft", "--llm-min-pass-rate", "correctness=40%",
                     "--llm-min-pass-rate", "toxicity=0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    gates = [line for line in summary_section(result) if "gate" in line]
    assert "gate: correctness pass rate >= 40.0%: met (50.0%)" in gates
    assert "FAILED gate: toxicity pass rate >= 50.0%: MISSED (no verdicts)" in gates


def test_soft_mode_reports_but_does_not_fail(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("--llm-soft", "-v", "--junitxml", "junit.xml")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=len(QA_ROWS))
    row = summary_table(result)["correctness"]
    assert row["passed"] == "3"  # the verdicts below threshold are still reported
    assert any(line.startswith("lowest-scoring failures") for line in summary_section(result))
    result.stdout.fnmatch_lines(["*test_qa[[]river[]] PASSED [[]correctness=0.0*"])
    out = case_system_out(llm.junit())
    assert {short_id(n) for n, v in out.items() if v["llm.correctness.passed"] == "false"} == QA_FAIL


# -- credentials --------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["openai", "hf"])
def test_api_key_is_used_but_never_written(llm: LLMRun, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY" if backend == "openai" else "HF_TOKEN", SECRET)
    llm.qa_suite()
    llm.makepyfile(
        """
        def test_echo(assert_llm_score):
            assert_llm_score("Paris.", input="Capital?", expected="Paris.")
        """,
        name="test_echo",
    )
    # the server echoes the key in an error, as OpenAI does ("Incorrect API key provided: sk-...")
    llm.server.fail_next(401, 1, body=json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}",
                                                            "type": "invalid_request_error"}}))
    result = llm.run("-v", "-rA", "--junitxml", "junit.xml", "--llm-results", "results.jsonl",
                     "--llm-concurrency", "1", "test_echo.py", "test_qa.py", backend=backend, cache="rw")
    assert outcomes(result)["failed"] >= {"test_echo"}
    assert "authentication failed (401)" in result.stdout.str()
    auth = {h.get("authorization") for h in llm.server.headers}
    assert auth == {f"Bearer {SECRET}"}  # the key was sent to the server
    assert SECRET not in result.stdout.str() + result.stderr.str()
    assert SECRET not in (llm.path / "junit.xml").read_text()
    assert SECRET not in (llm.path / "results.jsonl").read_text()
    cache_bytes = b"".join(p.read_bytes() for p in (llm.path / ".llmjudge_cache").iterdir() if p.is_file())
    assert len(cache_bytes) > 0 and SECRET.encode() not in cache_bytes
    assert SECRET[8:20].encode() not in cache_bytes


def test_no_cli_flag_takes_a_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    help_text = result.stdout.str().lower()
    assert "--llm-judge" in help_text
    assert "api-key" not in help_text and "api_key" not in help_text and "--llm-token" not in help_text
