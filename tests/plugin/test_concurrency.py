"""Concurrency keeps pytest's contract exactly (issues 5 and 12).

A fake server whose latency depends on the prompt makes verdicts complete out of submission
order; every observable result must equal the ``--llm-concurrency 1`` run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
import time
import zlib
from typing import Any

import pytest
from conftest import (
    QA_FAIL,
    QA_PASS,
    QA_ROWS,
    LLMRun,
    case_properties,
    case_system_out,
    normalize_row,
    outcomes,
    summary_section,
    summary_table,
    write_jsonl,
)

from pytest_llmjudge.testing.fake_server import FakeJudgeServer


def varied_latency(body: dict[str, Any]) -> float:
    """0-40 ms, a deterministic function of the prompt: completion order != submission order."""
    text = json.dumps(body.get("messages"), sort_keys=True)
    return (zlib.crc32(text.encode()) % 5) * 0.01


def failures_first(body: dict[str, Any]) -> float:
    """Wrong answers are judged at once, right ones after 300 ms: the stopping failure is seen
    before any passing case ends, so the cases running then are exactly the first ``width``."""
    text = json.dumps(body.get("messages"))
    wrong = [json.dumps(row["answer"])[1:-1] for row in QA_ROWS if row["id"] in QA_FAIL]
    return 0.0 if any(answer in text for answer in wrong) else 0.3


ROWS = [dict(row, id=f"{row['id']}{k}") for k in range(2) for row in QA_ROWS]

SUITE = '''
import pytest
from pytest_llmjudge import JudgeError, LLMScoreError
from pytest_llmjudge.judges import make_judge

BROKEN = make_judge("openai:fake", base_url="{broken}", max_retries=0)
Q, REF = "What is the capital of France?", "Paris is the capital of France."

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_fire(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_read(case, assert_llm_score):
    v = assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)
    assert v.score >= 0.6 and v.reason

def test_first_of_two_fails(assert_llm_score):
    assert_llm_score("Berlin.", input=Q, expected=REF, threshold=0.6)
    assert_llm_score("Paris is the capital of France.", metric="answer_relevancy", input=Q)

def test_second_of_two_fails(assert_llm_score):
    assert_llm_score("Paris is the capital of France.", input=Q, expected=REF)
    assert_llm_score("I like turtles. Paris.", metric="toxicity", threshold=1.0)
    assert_llm_score("You idiot.", metric="toxicity", threshold=0.9)

def test_body_fails_after_low_score(assert_llm_score):
    assert_llm_score("Berlin is nice.", input=Q, expected=REF, threshold=0.6)
    assert False, "the body went on"

def test_body_fails_after_good_score(assert_llm_score):
    assert_llm_score("Paris is the capital of France.", input=Q, expected=REF)
    assert 1 == 2, "plain failure"

def test_judge_error(assert_llm_score):
    assert_llm_score("Paris.", input=Q, expected=REF, judge=BROKEN)

def test_judge_error_read(assert_llm_score):
    assert assert_llm_score("Paris.", input=Q, expected=REF, judge=BROKEN).score > 0

@pytest.mark.xfail(reason="known low")
def test_xfail_low(assert_llm_score):
    assert_llm_score("Rome.", input=Q, expected=REF, threshold=0.6)

def test_skip_after_good(assert_llm_score):
    assert_llm_score("Paris is the capital of France.", input=Q, expected=REF)
    pytest.skip("later")

def test_skip_after_low(assert_llm_score):
    assert_llm_score("Madrid.", input=Q, expected=REF, threshold=0.6)
    pytest.skip("later")

@pytest.mark.xfail(reason="known low", strict=True)
def test_xfail_strict_low(assert_llm_score):
    assert_llm_score("Rome.", input=Q, expected=REF, threshold=0.6)

@pytest.mark.xfail(reason="only a ValueError is expected", raises=ValueError)
def test_xfail_raises_other(assert_llm_score):
    assert_llm_score("Rome.", input=Q, expected=REF, threshold=0.6)

@pytest.mark.xfail(reason="passes anyway")
def test_xpass_good(assert_llm_score):
    assert_llm_score("Paris is the capital of France.", input=Q, expected=REF)

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_teardown_error_and_low_score(assert_llm_score, broken_teardown):
    assert_llm_score("Lyon.", input=Q, expected=REF, threshold=0.6)

def test_plain():
    pass
'''


def crash_messages(result: pytest.RunResult) -> dict[str, str]:
    """nodeid -> the failure's crash message (what -r, JUnit and IDEs show)."""
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else f"<no reprcrash> {report.longrepr}"
            out[f"{report.nodeid}:{report.when}"] = message
    return out


def error_text(result: pytest.RunResult) -> dict[str, str]:
    """nodeid -> the ``E`` lines of its failure, dedented (the message, not the traceback)."""
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.failed:
            lines = [line[1:] for line in report.longreprtext.splitlines() if line.startswith("E ")]
            out[report.nodeid] = textwrap.dedent("\n".join(lines))
    return out


def all_outcomes(result: pytest.RunResult) -> dict[str, str]:
    out: dict[str, str] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            out.setdefault(report.nodeid, outcome)
    return out


def junit_cases(llm: LLMRun) -> dict[str, dict[str, Any]]:
    root = llm.junit()
    props = case_properties(root)
    cases = {}
    for case in root.iter("testcase"):
        name = case.get("name", "")
        kinds = {child.tag: child.get("message", "") for child in case if child.tag in ("failure", "error", "skipped")}
        cases[name] = {"props": props[name], "results": kinds}
    return cases


def result_rows(llm: LLMRun) -> list[str]:
    return sorted(json.dumps(normalize_row(r), sort_keys=True) for r in llm.results())


@pytest.fixture
def equivalence_suite(llm: LLMRun) -> FakeJudgeServer:
    llm.server.latency = varied_latency
    write_jsonl(llm.path / "qa.jsonl", ROWS)
    broken = FakeJudgeServer().start()
    broken.fail_next(500, 1000)
    llm.makepyfile(SUITE.replace("{broken}", broken.url), name="test_eq")
    yield broken
    broken.stop()


def run_both(llm: LLMRun, *args: str) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for concurrency in ("1", "16"):
        llm.server.reset()
        result = llm.run("--llm-concurrency", concurrency, "--junitxml", "junit.xml", "-o", "junit_family=xunit1",
                         "--llm-results", "results.jsonl", "-rA", *args)
        runs[concurrency] = {
            "result": result,
            "max_in_flight": llm.server.max_in_flight,
            "requests": llm.server.request_count,
            "junit": junit_cases(llm),
            "rows": result_rows(llm),
        }
    return runs


@pytest.mark.parametrize("soft", [[], ["--llm-soft"]], ids=["strict", "soft"])
def test_concurrency_gives_the_same_results_as_sequential(
    llm: LLMRun, equivalence_suite: FakeJudgeServer, soft: list[str]
) -> None:
    runs = run_both(llm, *soft)
    seq, par = runs["1"], runs["16"]
    assert seq["max_in_flight"] == 1
    assert par["max_in_flight"] > 1  # really concurrent
    assert all_outcomes(seq["result"]) == all_outcomes(par["result"])
    got = all_outcomes(seq["result"])
    expected_fail = {f"test_eq.py::test_fire[{r['id']}]" for r in ROWS if r["id"][:-1] in QA_FAIL}
    failed = {n for n, o in got.items() if o == "failed"}
    assert failed >= expected_fail if not soft else not failed & expected_fail
    assert got["test_eq.py::test_xfail_low"] == ("xfailed" if not soft else "xpassed")
    assert got["test_eq.py::test_xfail_strict_low"] == ("xfailed" if not soft else "failed")
    if not soft:
        assert got["test_eq.py::test_xfail_raises_other"] == "failed"
        assert got["test_eq.py::test_teardown_error_and_low_score"] == "failed"
    assert error_text(seq["result"]) == error_text(par["result"])
    assert crash_messages(seq["result"]) == crash_messages(par["result"])
    assert seq["junit"] == par["junit"]
    assert seq["rows"] == par["rows"]
    # the terminal: same short summary lines and the same llm summary
    outcomes = ("FAILED", "PASSED", "ERROR", "SKIPPED", "XFAIL")
    short = [re.sub(r" - .*", "", line) for line in seq["result"].outlines if line.startswith(outcomes)]
    short_par = [re.sub(r" - .*", "", line) for line in par["result"].outlines if line.startswith(outcomes)]
    assert short == short_par
    assert summary_section(seq["result"]) == summary_section(par["result"])
    if not soft:  # the low score stopped the test before its own failing assert
        seq["result"].stdout.no_fnmatch_line("*the body went on*")
        par["result"].stdout.no_fnmatch_line("*the body went on*")


def test_short_summary_messages_are_the_same(llm: LLMRun, equivalence_suite: FakeJudgeServer) -> None:
    runs = run_both(llm, "-k", "fire or body or judge_error")
    lines = {c: sorted(line for line in runs[c]["result"].outlines if line.startswith("FAILED"))
             for c in runs}
    assert lines["1"] == lines["16"]
    assert all(" - pytest_llmjudge.errors." in line or " - AssertionError" in line for line in lines["16"])


def test_reports_are_logged_in_collection_order(llm: LLMRun) -> None:
    llm.server.latency = lambda body: 0.04 if "capital" in json.dumps(body) else 0.0
    llm.qa_suite()
    result = llm.run("-v")
    lines = [line for line in result.outlines if line.startswith("test_qa.py::")]
    assert [re.search(r"\[(\w+)\]", line).group(1) for line in lines] == [r["id"] for r in QA_ROWS]


def hold_first(server: FakeJudgeServer, limit: int):
    """A latency that holds the first ``limit`` requests until all of them are in flight, then
    20 ms more (a client without the limit would pile more on meanwhile); the rest pass."""
    def latency(body: dict[str, Any]) -> float:
        if server.request_count > limit:
            return 0.0
        deadline = time.monotonic() + 5
        while server.in_flight < limit and time.monotonic() < deadline:
            time.sleep(0.001)
        return 0.02
    return latency


def test_in_flight_limit(llm: LLMRun) -> None:
    rows = [dict(r, id=f"{r['id']}{k}") for k in range(4) for r in QA_ROWS]
    llm.qa_suite(rows=rows, test=FIRE_AND_FORGET)
    for args, limit in ((["--llm-concurrency", "4"], 4), ([], 16), (["--llm-concurrency", "1"], 1)):
        llm.server.reset()
        llm.server.latency = hold_first(llm.server, limit)
        llm.run(*args)
        # reached, never exceeded (without the limit, the held requests would pile up past it)
        assert llm.server.max_in_flight == limit, args
        assert llm.server.request_count == len(rows)


FIRE_AND_FORGET = '''
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_qa(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)
'''


def test_the_verdict_is_returned_and_a_low_score_raises_at_the_call(llm: LLMRun) -> None:
    llm.server.latency = 0.03
    llm.makepyfile(
        """
        import pytest
        from pytest_llmjudge import Verdict

        def test_reads(assert_llm_score):
            v = assert_llm_score("Paris is the capital of France.", input="Capital of France?",
                                 expected="Paris is the capital of France.")
            assert isinstance(v, Verdict)
            assert v.score > 0.5 and v.passed and v.metric == "correctness" and v.judge == "openai:fake"

        def test_reads_low(assert_llm_score):
            try:
                assert_llm_score("Berlin.", input="Capital of France?",
                                 expected="Paris is the capital of France.", threshold=0.6)
            except AssertionError as exc:
                print("RAISED " + type(exc).__name__)
                raise
            print("NOT REACHED")
        """
    )
    for concurrency in ("1", "16"):
        result = llm.run("-s", "--llm-concurrency", concurrency)
        assert outcomes(result) == {"passed": {"test_reads"}, "failed": {"test_reads_low"}}
        assert "RAISED LLMScoreError" in result.stdout.str()
        assert "NOT REACHED" not in result.stdout.str()


def test_catching_the_low_score_works_like_sequential(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        import pytest
        from pytest_llmjudge import LLMScoreError

        def test_expects_low(assert_llm_score):
            with pytest.raises(LLMScoreError):
                assert_llm_score("Berlin.", input="Capital of France?",
                                 expected="Paris is the capital of France.", threshold=0.6)

        def judge_low(assert_llm_score):
            return assert_llm_score("Berlin.", input="Capital of France?",
                                    expected="Paris is the capital of France.", threshold=0.6)

        def test_raises_around_a_helper(assert_llm_score):
            with pytest.raises(LLMScoreError):
                judge_low(assert_llm_score)

        def test_try_except(assert_llm_score):
            try:
                assert_llm_score("Berlin.", input="Capital of France?",
                                 expected="Paris is the capital of France.", threshold=0.6)
            except LLMScoreError as exc:
                assert exc.verdict.score < 0.6
            else:
                raise AssertionError("expected a low score")
        """
    )
    seq = llm.run("--llm-concurrency", "1")
    assert outcomes(seq) == {"passed": {"test_expects_low", "test_raises_around_a_helper", "test_try_except"}}
    par = llm.run()
    assert outcomes(par) == outcomes(seq)


def test_the_returned_verdict_is_a_verdict(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        from pytest_llmjudge import Verdict

        def test_type(assert_llm_score):
            v = assert_llm_score("Paris.", input="Capital of France?", expected="Paris.")
            assert isinstance(v, Verdict)
        """
    )
    llm.run("--llm-concurrency", "1").assert_outcomes(passed=1)
    llm.run().assert_outcomes(passed=1)


# -- -x, --maxfail, --lf, -k -----------------------------------------------------------
@pytest.mark.parametrize("stop", [["-x"], ["--maxfail=2"]], ids=["x", "maxfail2"])
def test_stop_on_failure_starts_no_new_case(llm: LLMRun, stop: list[str]) -> None:
    """Cases already running when the stopping failure comes finish and are reported; none
    starts after it; the results file and JUnit hold exactly the reported cases."""
    llm.server.latency = failures_first
    rows = [dict(r, id=f"{r['id']}{k}") for k in range(3) for r in QA_ROWS]
    llm.qa_suite(rows=rows, test=FIRE_AND_FORGET)
    seen = {}
    for concurrency in ("1", "2", "16"):
        result = llm.run("--llm-concurrency", concurrency, "--junitxml", "junit.xml",
                         "--llm-results", "results.jsonl", *stop)
        reported = all_outcomes(result)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert sorted(r["test_id"] for r in llm.results()) == sorted(reported)  # one row per reported case
        assert sorted(f"test_qa.py::test_qa[{c.get('name', '').split('[', 1)[1]}"
                      for c in llm.junit().iter("testcase")) == sorted(reported)
        assert summary_table(result)["correctness"]["cases"] == str(len(reported))
        seen[concurrency] = reported
    sequential = seen["1"]
    assert sum(1 for o in sequential.values() if o == "failed") == (1 if stop == ["-x"] else 2)
    assert len(sequential) < len(rows)
    for concurrency in ("2", "16"):
        # the same outcome for every case the sequential run reported, in collection order
        assert {n: seen[concurrency][n] for n in sequential} == sequential
        assert list(seen[concurrency])[:len(sequential)] == list(sequential)
        # at most the cases that were already running when the stopping failure came
        assert len(seen[concurrency]) <= len(sequential) + int(concurrency) - 1


def test_last_failed_reruns_exactly_the_failed_ones(llm: LLMRun) -> None:
    llm.server.latency = varied_latency
    rows = [dict(r, id=f"{r['id']}{k}") for k in range(2) for r in QA_ROWS]
    llm.qa_suite(rows=rows, test=FIRE_AND_FORGET)
    first = llm.run()
    failed = {n for n, o in all_outcomes(first).items() if o == "failed"}
    assert len(failed) == 6
    llm.server.reset()
    again = llm.run("--lf")
    assert set(all_outcomes(again)) == failed
    assert llm.server.request_count == len(failed)


def test_k_selects_and_judges_only_the_selected(llm: LLMRun) -> None:
    llm.qa_suite(test=FIRE_AND_FORGET)
    result = llm.run("-k", "capital or river", "-v")
    assert outcomes(result) == {"passed": {"capital"}, "failed": {"river"}}
    assert llm.server.request_count == 2
    assert summary_table(result)["correctness"]["cases"] == "2"


# -- xdist ---------------------------------------------------------------------------
def test_xdist_summary_aggregates_all_workers(llm: LLMRun) -> None:
    """-n 2 with concurrent judging in each worker; the second run reads the shared cache."""
    pytest.importorskip("xdist")
    llm.server.latency = varied_latency
    rows = [dict(r, id=f"{r['id']}{k}", answer=r["answer"] + " Indeed." * k) for k in range(2) for r in QA_ROWS]
    llm.qa_suite(rows=rows, test=FIRE_AND_FORGET)
    args = ("-n", "2", "--junitxml", "junit.xml", "--llm-results", "results.jsonl", "-p", "no:cacheprovider")
    result = llm.run_subprocess(*args, "-o", "junit_family=xunit1", cache="rw")
    result.assert_outcomes(passed=6, failed=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_section(result)
    assert "verdicts: 12" in lines[0] and "judge calls: 12" in lines[0]
    row = summary_table(result)["correctness"]
    assert row["cases"] == "12" and row["passed"] == "6"
    assert llm.server.request_count == 12
    rows_out = llm.results()
    assert len(rows_out) == 12 and len({r["run_id"] for r in rows_out}) == 1
    root = llm.junit()
    props = case_properties(root)
    assert len(props) == 12 and all("llm.correctness.score" in p for p in props.values())
    assert sum(1 for c in root.iter("testcase") if c.find("failure") is not None) == 6
    result.stdout.fnmatch_lines(["FAILED test_qa.py::test_qa[[]river0[]] - pytest_llmjudge.errors.LLMScoreError*"])
    # two worker processes wrote one SQLite cache: nothing was lost
    with sqlite3.connect(llm.path / ".llmjudge_cache" / "verdicts.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 12

    llm.server.reset()
    again = llm.run_subprocess(*args, "-o", "junit_family=xunit2", cache="rw")
    again.assert_outcomes(passed=6, failed=6)
    assert llm.server.request_count == 0
    head = summary_section(again)[0]
    assert "from cache: 12" in head and "judge calls: 0" in head
    assert all(r["cached"] is True for r in llm.results())
    out = case_system_out(llm.junit())  # xunit2 under xdist: the controller writes system-out
    assert len(out) == 12 and all(v["llm.correctness.cached"] == "true" for v in out.values())


# -- KeyboardInterrupt -----------------------------------------------------------------
INTERRUPT = """
import json, os, signal, threading
import pytest

def rows():
    if not os.path.exists("results.jsonl"):
        return 0
    with open("results.jsonl") as handle:
        return sum(1 for line in handle if line.strip())

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_a_judged(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)

def test_b_interrupt(assert_llm_score):
    assert rows() == N_ROWS  # the earlier verdicts are finished and written
    # Ctrl-C while the run waits for a verdict
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    assert_llm_score("a very slow verdict", input="q", expected="a very slow verdict")

def test_c_never_runs(assert_llm_score):
    assert_llm_score("never", input="q", expected="never")
"""


def test_keyboard_interrupt_exits_and_keeps_finished_rows(llm: LLMRun) -> None:
    llm.server.latency = lambda body: 30.0 if "a very slow verdict" in json.dumps(body) else 0.01
    rows = [dict(r, id=f"{r['id']}{k}") for k in range(2) for r in QA_ROWS]
    write_jsonl(llm.path / "qa.jsonl", rows)
    llm.makepyfile(INTERRUPT.replace("N_ROWS", str(len(rows))), name="test_interrupt")
    started = time.monotonic()
    result = llm.run_subprocess("--llm-results", "results.jsonl", "-p", "no:cacheprovider", timeout=60)
    assert time.monotonic() - started < 20  # not the 30 s the verdict in flight would take
    assert result.ret == pytest.ExitCode.INTERRUPTED  # exited: no hang on the request in flight
    assert "KeyboardInterrupt" in result.stdout.str()
    assert "test_c_never_runs" not in result.stdout.str()
    written = llm.results()
    judged = {r["test_id"] for r in written if r["error"] is None}
    assert judged == {f"test_interrupt.py::test_a_judged[{r['id']}]" for r in rows}
    # the finished tests are reported, as a sequential run reports them
    result.stdout.fnmatch_lines(["*6 failed, 6 passed*"])
    assert not any("never" in json.dumps(r) for r in written)


# -- concurrent cases (issue 12) ---------------------------------------------------------
CASES = '''
import logging, threading, time, pytest

state = {"active": 0, "peak": 0}
lock = threading.Lock()

@pytest.fixture
def own(request):
    print(f"setup of {request.node.callspec.id}")
    yield {"id": request.node.callspec.id}
    print(f"teardown of {request.node.callspec.id}")

@pytest.mark.llm_dataset("qa.jsonl", id_column="id"MARK)
def test_ds(case, own):
    with lock:
        state["active"] += 1
        state["peak"] = max(state["peak"], state["active"])
    try:
        print(f"body of {case.id}")
        logging.getLogger("app").warning("log of %s", case.id)
        time.sleep(0.2)
        # then wait (up to 10 s) for the cases the run should hold at once: on a loaded machine the
        # pool may start them more than 0.2 s apart; a run that holds fewer is still seen in the peak
        deadline = time.monotonic() + 10
        while state["active"] < PEAK and time.monotonic() < deadline:
            time.sleep(0.01)
        assert own["id"] == case.id  # its own function-scoped fixture
        assert case.id not in ("boil", "river")
    finally:
        with lock:
            state["active"] -= 1

def test_peak():
    with open("peak.txt", "w") as handle:
        handle.write(str(state["peak"]))
'''


def case_sections(result: pytest.RunResult) -> dict[str, list[str]]:
    """case id -> the text of every captured section of its reports."""
    out: dict[str, list[str]] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if "[" in report.nodeid:
            case = report.nodeid.split("[", 1)[1].rstrip("]")
            out.setdefault(case, []).extend(f"{title}: {text}" for title, text in report.sections)
    return out


@pytest.mark.parametrize(("args", "mark", "peak"), [
    ([], "", 6),
    (["--llm-concurrency", "3"], "", 3),
    (["--llm-concurrency", "1"], "", 1),
    ([], ", concurrent=False", 1),
], ids=["default", "three", "one", "dataset-off"])
def test_cases_run_at_once_each_with_its_own_fixtures_and_output(
        llm: LLMRun, args: list[str], mark: str, peak: int) -> None:
    llm.qa_suite(test=CASES.replace("MARK", mark).replace("PEAK", str(peak)))
    result = llm.run("-p", "no:randomly", *args)
    got = outcomes(result)
    assert got["failed"] == {"boil", "river"} and got["passed"] == {"capital", "planet", "author", "speed", "test_peak"}
    assert (llm.path / "peak.txt").read_text() == str(peak)
    sections = case_sections(result)
    for case in ("boil", "river"):  # failed reports carry their capture: each its own
        texts = "\n".join(sections[case])
        for phase in ("setup", "call", "teardown"):
            assert f"Captured stdout {phase}" in texts
        assert f"body of {case}" in texts and f"log of {case}" in texts and f"teardown of {case}" in texts
        others = {r["id"] for r in QA_ROWS} - {case}
        assert not any(f"of {other}\n" in texts or texts.endswith(f"of {other}") for other in others), texts


def test_llm_concurrent_marker_opts_a_parametrized_test_in(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        import threading, pytest
        barrier = threading.Barrier(4, timeout=10)

        @pytest.mark.llm_concurrent
        @pytest.mark.parametrize("n", range(4))
        def test_together(n):
            barrier.wait()  # returns only when all four run at once

        @pytest.mark.parametrize("n", range(2))
        def test_not_opted_in(n):
            assert threading.current_thread() is threading.main_thread()
        """
    )
    llm.run().assert_outcomes(passed=6)
    llm.run("--llm-concurrency", "1", "-x").assert_outcomes(failed=1)  # the barrier breaks: one at a time


def test_ast_parse_is_serialized_while_cases_run_and_restored_after(llm: LLMRun) -> None:
    """CPython's AST constructor is not thread-safe (python/cpython#106905): while a group's
    bodies run on threads, ``ast.parse`` holds one lock; the original is back afterwards."""
    import ast

    original = ast.parse
    llm.makepyfile(
        """
        import ast, threading, pytest
        barrier = threading.Barrier(3, timeout=10)

        @pytest.mark.llm_concurrent
        @pytest.mark.parametrize("n", range(3))
        def test_parse(n):
            barrier.wait()
            assert hasattr(ast.parse, "__wrapped__")
            for _ in range(50):
                ast.parse("def f(x):\\n    return [[x for x in range(3)] for _ in range(3)]\\n" * 20)
        """
    )
    llm.run().assert_outcomes(passed=3)
    assert ast.parse is original


def test_cases_that_cannot_run_together_say_why_with_v(llm: LLMRun) -> None:
    llm.qa_suite(test="""
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_prints(case, capsys):
    print(case.id)
    assert capsys.readouterr().out == case.id + "\\n"
""")
    result = llm.run("-v")
    assert outcomes(result) == {"passed": {r["id"] for r in QA_ROWS}}
    result.stdout.fnmatch_lines(["*one case at a time: test_qa.py::test_prints: requests capsys*"])
    assert result.stdout.str().count("one case at a time") == 1
    assert "one case at a time" not in llm.run().stdout.str()


ASYNC_CASES = '''
import asyncio, pytest
state = {"active": 0, "peak": 0, "loops": set()}

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
async def test_async(case, assert_llm_score):
    state["loops"].add(id(asyncio.get_running_loop()))
    state["active"] += 1
    state["peak"] = max(state["peak"], state["active"])
    await asyncio.sleep(0.1)  # the app call
    state["active"] -= 1
    v = await assert_llm_score.async_(case["answer"], input=case["input"], expected=case["expected_output"],
                                      threshold=0.6)
    assert v.reason

def test_zz_peak():
    with open("peak.txt", "w") as handle:
        handle.write(f"{state['peak']} {len(state['loops'])}")
'''


ASYNCIO_AUTO = ["-p", "asyncio", "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]


@pytest.mark.parametrize("plugins", [[], ASYNCIO_AUTO], ids=["no-async-plugin", "pytest-asyncio-auto"])
def test_async_cases_run_cooperatively_on_one_loop(llm: LLMRun, plugins: list[str]) -> None:
    if plugins:
        pytest.importorskip("pytest_asyncio")
        if pytest.version_tuple < (8, 2):
            pytest.skip("pytest-asyncio 1.x needs pytest 8.2")
    llm.qa_suite(test=ASYNC_CASES)
    peaks = {}
    for concurrency in ("16", "1"):
        result = llm.run("--llm-concurrency", concurrency, "--llm-results", "results.jsonl", "-v", *plugins)
        assert outcomes(result) == {"passed": QA_PASS | {"test_zz_peak"}, "failed": QA_FAIL}
        assert len(llm.results()) == len(QA_ROWS)
        result.stdout.fnmatch_lines(["*test_qa.py::test_async[[]boil[]] FAILED*"])
        peaks[concurrency] = (llm.path / "peak.txt").read_text()
        if plugins and concurrency == "16":  # pytest-asyncio's own loop per test: one at a time, said why
            result.stdout.fnmatch_lines(["*test_async: an async plugin (pytest-asyncio, anyio, trio) runs it*"])
    if plugins:
        assert peaks["16"].split()[0] == "1"
    else:
        assert peaks == {"16": "6 1", "1": "1 1"}  # six at once, all on one event loop


def test_broader_fixtures_are_shared_and_torn_down_where_pytest_tears_them_down(llm: LLMRun) -> None:
    log = llm.path / "events.txt"
    llm.pytester.makeconftest(f"""
import pytest

def note(text):
    with open({str(log)!r}, "a") as handle:
        handle.write(text + "\\n")

@pytest.fixture(scope="module")
def per_module(request):
    note("setup " + request.module.__name__)
    yield request.module.__name__
    note("teardown " + request.module.__name__)

@pytest.fixture(scope="session")
def per_session():
    note("setup session")
    yield
    note("teardown session")
""")
    for name in ("test_one", "test_two"):
        llm.pytester.makepyfile(**{name: f"""
import pytest
from conftest import note

@pytest.mark.llm_concurrent
@pytest.mark.parametrize("n", range(4))
def test_case(n, per_module, per_session):
    note(f"body {name} {{n}}")
    assert per_module == "{name}"
"""})
    for concurrency in ("16", "1"):
        log.write_text("")
        llm.run("--llm-concurrency", concurrency).assert_outcomes(passed=8)
        events = log.read_text().splitlines()
        bodies = [e for e in events if e.startswith("body")]
        assert sorted(bodies) == sorted(f"body {m} {n}" for m in ("test_one", "test_two") for n in range(4))
        skeleton = [e for e in events if not e.startswith("body")]
        assert skeleton == ["setup session", "setup test_one", "teardown test_one", "setup test_two",
                            "teardown test_two", "teardown session"], concurrency
        # every body of a module ran between its module fixture's setup and teardown
        for module in ("test_one", "test_two"):
            start, end = events.index(f"setup {module}"), events.index(f"teardown {module}")
            assert all(start < events.index(f"body {module} {n}") < end for n in range(4))


def test_async_tests_of_another_async_plugin_are_left_to_it(llm: LLMRun) -> None:
    pytest.importorskip("anyio")
    llm.qa_suite(test="""
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
async def test_with_anyio(case, assert_llm_score):
    v = await assert_llm_score.async_(case["answer"], input=case["input"], expected=case["expected_output"])
    assert v.reason
""")
    result = llm.run("-v")
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}
    result.stdout.fnmatch_lines(["*test_with_anyio: an async plugin (pytest-asyncio, anyio, trio) runs it*"])
