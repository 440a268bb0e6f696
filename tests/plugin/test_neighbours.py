"""Issue 12: concurrent cases keep pytest's contract, with pytest's features and its neighbours.

Each test runs the same suite at ``--llm-concurrency 16`` (cases of a group at once) and at
``--llm-concurrency 1`` (pytest's own protocol, one at a time) and compares what pytest and
its plugins report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from conftest import QA_ROWS, LLMRun, write_jsonl

CONTRACT = '''
import threading, time, pytest
from pytest_llmjudge import LLMScoreError

pytestmark = pytest.mark.llm_concurrent
Q, REF = "What is the capital of France?", "Paris is the capital of France."
GOOD, LOW = "Paris is the capital of France.", "Berlin."

@pytest.mark.parametrize("n", [0, pytest.param(1, marks=pytest.mark.skip(reason="marked skip")),
                               pytest.param(2, marks=pytest.mark.xfail(reason="known low")),
                               pytest.param(3, marks=pytest.mark.skipif(True, reason="skipif")),
                               pytest.param(4, marks=pytest.mark.xfail(reason="passes", strict=True))])
def test_marks(n, assert_llm_score):
    assert_llm_score(LOW if n == 2 else GOOD, input=Q, expected=REF, threshold=0.6)

@pytest.mark.parametrize("n", range(5))
def test_inline(n, assert_llm_score):
    if n == 0:
        pytest.skip("skipped in the body")
    if n == 1:
        pytest.xfail("xfailed in the body")
    if n == 2:
        with pytest.raises(LLMScoreError):
            assert_llm_score(LOW, input=Q, expected=REF, threshold=0.6)
        return
    if n == 3:
        assert_llm_score(LOW, input=Q, expected=REF, threshold=0.6)
        raise AssertionError("not reached")
    assert assert_llm_score(GOOD, input=Q, expected=REF).passed

@pytest.fixture
def judged_at_setup(request, assert_llm_score):
    assert_llm_score(LOW if request.param % 2 else GOOD, input=Q, expected=REF, threshold=0.6)

@pytest.mark.parametrize("judged_at_setup", [0, 1, 2], indirect=True)
def test_judged_in_setup(judged_at_setup):
    pass

@pytest.fixture
def judged_at_teardown(request, assert_llm_score):
    yield
    assert_llm_score(LOW if request.param % 2 else GOOD, input=Q, expected=REF, threshold=0.6)

@pytest.mark.parametrize("judged_at_teardown", [1, 2, 3], indirect=True)
def test_judged_in_teardown(judged_at_teardown):
    pass

def test_plain_untouched():
    assert threading.current_thread() is threading.main_thread()
'''


def phases(result: pytest.RunResult) -> dict[str, str]:
    """'nodeid when' -> outcome (xfailed/xpassed told apart), for every report."""
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        out[f"{report.nodeid} {report.when}"] = outcome
    return out


def messages(result: pytest.RunResult) -> dict[str, str]:
    """'nodeid when' -> the E lines of the failure (what the test said, not where it ran)."""
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.failed:
            out[f"{report.nodeid} {report.when}"] = "\n".join(
                line for line in report.longreprtext.splitlines() if line.startswith("E "))
    return out


def rows(llm: LLMRun) -> list[tuple[str, Any, Any]]:
    return sorted((r["test_id"], r["score"], r["error"]) for r in llm.results())


def both(llm: LLMRun, *args: str, **kwargs: Any) -> dict[str, Any]:
    runs = {}
    for concurrency in ("16", "1"):
        llm.server.reset()
        runs[concurrency] = llm.run("--llm-concurrency", concurrency, *args, **kwargs)
        runs[concurrency].in_flight = llm.server.max_in_flight  # type: ignore[attr-defined]
    return runs


def test_marks_inline_outcomes_raises_and_judged_fixtures_match_sequential(llm: LLMRun) -> None:
    llm.server.latency = 0.05
    llm.makepyfile(CONTRACT, name="test_contract")
    runs = {}
    for concurrency in ("16", "1"):
        llm.server.reset()
        result = llm.run("--llm-concurrency", concurrency, "--llm-results", "results.jsonl",
                         "--junitxml", "junit.xml", "-rA")
        runs[concurrency] = (phases(result), messages(result), rows(llm), result.ret,
                             (llm.path / "junit.xml").read_text().count("<testcase"), llm.server.max_in_flight)
    par, seq = runs["16"], runs["1"]
    assert par[:5] == seq[:5]
    assert par[5] > 1 and seq[5] == 1  # the cases really ran at once
    got = par[0]
    assert got["test_contract.py::test_judged_in_setup[1] setup"] == "failed"  # an ERROR, as at 1
    assert got["test_contract.py::test_judged_in_teardown[2] call"] == "passed"
    assert got["test_contract.py::test_judged_in_teardown[2] teardown"] == "passed"
    assert got["test_contract.py::test_judged_in_teardown[1] call"] == "passed"  # PASSED + teardown ERROR
    assert got["test_contract.py::test_judged_in_teardown[1] teardown"] == "failed"
    assert got["test_contract.py::test_inline[2] call"] == "passed"  # pytest.raises caught it
    assert got["test_contract.py::test_marks[2] call"] == "xfailed"
    assert got["test_contract.py::test_marks[4] call"] == "failed"  # strict xpass


@pytest.mark.parametrize("tb", ["long", "short", "line", "native", "no"])
def test_tb_styles_show_the_same_failures(llm: LLMRun, tb: str) -> None:
    llm.makepyfile(CONTRACT, name="test_contract")
    runs = both(llm, f"--tb={tb}", "-k", "inline or teardown")

    def failures(result: pytest.RunResult) -> list[str]:
        text = re.sub(r"\d+\.\d+s", "Ns", re.sub(r"0x[0-9a-f]+", "0x", result.stdout.str()))
        start = text.find("= FAILURES =") if "= FAILURES =" in text else text.find("short test summary")
        lines = text[start:].splitlines()[:-1]  # the last line has the run's time
        if tb == "native":  # frames outside the test file: pytest's runner at 1, pluggy and ours at 16
            lines = [line for line in lines if "test_contract.py" in line or not line.startswith(" ")]
        return lines

    assert failures(runs["16"]) == failures(runs["1"])


def test_durations_list_every_phase_of_every_case(llm: LLMRun) -> None:
    llm.makepyfile(CONTRACT, name="test_contract")
    runs = both(llm, "--durations=0", "--durations-min=0", "-vv")

    def entries(result: pytest.RunResult) -> set[str]:
        timed = re.compile(r"^\d+\.\d+s (setup|call|teardown) ")
        return {line.split("s ", 1)[1] for line in result.outlines if timed.match(line)}

    assert entries(runs["16"]) == entries(runs["1"]) and len(entries(runs["1"])) > 20


def test_last_failed_and_k_select_the_same_cases(llm: LLMRun) -> None:
    llm.makepyfile(CONTRACT, name="test_contract")
    for concurrency in ("16", "1"):
        llm.run("--llm-concurrency", concurrency)
        again = llm.run("--llm-concurrency", concurrency, "--lf")
        failed = {k.split()[0] for k, v in phases(again).items() if v == "failed"}
        assert failed == {f"test_contract.py::{name}" for name in (
            "test_inline[3]", "test_judged_in_setup[1]", "test_judged_in_teardown[1]", "test_judged_in_teardown[3]",
            "test_marks[4]")}
        ff = llm.run("--llm-concurrency", concurrency, "--ff", "-k", "inline")
        assert [k.split()[0] for k in phases(ff)][0] == "test_contract.py::test_inline[3]"


# -- rerunfailures, timeout, randomly, xdist --------------------------------------------
FLAKY = '''
import os, pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_flaky(case, assert_llm_score):
    marker = f"ran-{case.id}"
    first = not os.path.exists(marker)
    open(marker, "a").close()
    answer = "It boils when it is hot." if first and case.id == "capital" else case["answer"]
    assert_llm_score(answer, input=case["input"], expected=case["expected_output"], threshold=0.6)
'''


def test_rerunfailures_reruns_a_flaky_case_as_at_one(llm: LLMRun) -> None:
    pytest.importorskip("pytest_rerunfailures")
    write_jsonl(llm.path / "qa.jsonl", QA_ROWS)
    llm.makepyfile(FLAKY, name="test_flaky")
    seen = {}
    for concurrency in ("16", "1"):
        for path in llm.path.glob("ran-*"):
            path.unlink()
        result = llm.run("--llm-concurrency", concurrency, "--reruns", "2", "-v")
        seen[concurrency] = result.parseoutcomes()
        result.stdout.fnmatch_lines(["*test_flaky[[]capital[]] RERUN*", "*test_flaky[[]capital[]] PASSED*"])
    assert seen["16"] == seen["1"]
    assert seen["1"]["rerun"] == 3 * 2 + 1  # boil, author, river fail thrice; capital once


HANG = '''
import time, pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_case(case, assert_llm_score):
    if case.id == "planet":
        time.sleep(60)  # HANGS HERE
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)
'''


def test_timeout_thread_method_stops_the_run_on_the_hanging_case(llm: LLMRun) -> None:
    pytest.importorskip("pytest_timeout")
    write_jsonl(llm.path / "qa.jsonl", QA_ROWS)
    llm.makepyfile(HANG, name="test_hang")
    for concurrency in ("16", "1"):
        started = time.monotonic()
        result = llm.run_subprocess("--llm-concurrency", concurrency, "--timeout", "3", "--timeout-method", "thread",
                                    "--llm-results", "results.jsonl", "-v", "-p", "no:cacheprovider", timeout=50)
        assert time.monotonic() - started < 40, concurrency  # bounded by the timeout, not the 60 s sleep
        text = result.stdout.str() + result.stderr.str()
        assert "Timeout" in text and "HANGS HERE" in text, concurrency
        assert result.ret != 0
        # the cases before the hanging one were reported and their rows kept
        assert "test_case[capital] PASSED" in text and "test_case[boil] FAILED" in text
        assert {r["test_id"].split("[")[1][:-1] for r in llm.results()} >= {"capital", "boil"}


def test_timeout_signal_method_runs_cases_one_at_a_time(llm: LLMRun) -> None:
    pytest.importorskip("pytest_timeout")
    write_jsonl(llm.path / "qa.jsonl", QA_ROWS)
    llm.makepyfile(HANG.replace("time.sleep(60)", "time.sleep(5)"), name="test_hang")
    runs = both(llm, "--timeout", "1", "--timeout-method", "signal", "-v")
    assert phases(runs["16"]) == phases(runs["1"])
    assert phases(runs["1"])["test_hang.py::test_case[planet] call"] == "failed"
    runs["16"].stdout.fnmatch_lines(["*one case at a time: test_hang.py::test_case: pytest-timeout's signal method*"])


def test_randomly_orders_and_seeds_the_same(llm: LLMRun) -> None:
    pytest.importorskip("pytest_randomly")
    llm.makepyfile(CONTRACT, name="test_contract")
    runs = both(llm, "-p", "randomly", "-p", "no:cacheprovider", "--randomly-seed=1234")
    assert list(phases(runs["16"])) == list(phases(runs["1"]))  # same order
    assert phases(runs["16"]) == phases(runs["1"])
    assert list(phases(runs["1"])) != list(phases(llm.run("--llm-concurrency", "1")))  # it did reorder


def test_xdist_workers_give_the_same_outcomes(llm: LLMRun) -> None:
    pytest.importorskip("xdist")
    llm.makepyfile(CONTRACT, name="test_contract")
    sequential = llm.run_subprocess("--llm-concurrency", "1", "-p", "no:cacheprovider").parseoutcomes()
    distributed = llm.run_subprocess("-n", "2", "-p", "no:cacheprovider").parseoutcomes()
    distributed.pop("worker", None)
    sequential.pop("worker", None)
    assert distributed == sequential


# -- Ctrl-C ------------------------------------------------------------------------------
SLOW_CASES = '''
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_case(case, assert_llm_score):
    open(f"started-{case.id}", "w").close()
    assert_llm_score(case["answer"], input=case["input"], expected=case["expected_output"], threshold=0.6)
'''


@pytest.mark.parametrize("concurrency", ["16", "4"])
def test_ctrl_c_stops_within_a_second_and_keeps_finished_rows(llm: LLMRun, concurrency: str) -> None:
    """SIGINT while cases wait for slow verdicts: rc 2 at once, the finished rows kept."""
    rows = [dict(r, id=f"{r['id']}{k}") for k in range(5) for r in QA_ROWS]  # 30 cases
    write_jsonl(llm.path / "qa.jsonl", rows)
    llm.makepyfile(SLOW_CASES, name="test_slow")
    # the first 5 requests answer at once, the rest take 20 s
    llm.server.latency = lambda body: 0.0 if llm.server.request_count <= 5 else 20.0
    args = [sys.executable, "-m", "pytest", *llm.args("--llm-concurrency", concurrency, "--llm-results",
                                                     "results.jsonl", "-p", "no:cacheprovider")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, cwd=llm.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120  # start-up on a loaded machine; not what is measured
    while not ((llm.path / "results.jsonl").exists() and len(llm.results()) >= 5):
        assert time.monotonic() < deadline, "no verdicts came"
        time.sleep(0.05)
    time.sleep(0.3)  # the slow verdicts are in flight
    started_before = {p.name for p in llm.path.glob("started-*")}
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in proc.stdout))
    reader.start()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    reader.join(timeout=5)
    out = "".join(line for _, line in lines)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    # the run stopped (pytest's interrupted summary is out) at once, not after the 20 s verdicts in
    # flight; on an idle 2-core machine this takes 0.1-0.4 s (the bound is 1 s), but the
    # bound here leaves room for a loaded CI machine and is still far below 20 s
    stopped = next(at for at, line in lines if "!!! KeyboardInterrupt !!!" in line)
    assert stopped - sent < 5.0, stopped - sent
    assert "KeyboardInterrupt" in out
    assert {p.name for p in llm.path.glob("started-*")} == started_before  # no case started after it
    written = llm.results()
    assert len(written) >= 5 and all(row["error"] is None and row["score"] is not None for row in written)
    with open(llm.path / "results.jsonl", encoding="utf-8") as handle:
        assert all(json.loads(line) for line in handle)  # every row whole
