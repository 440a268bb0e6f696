"""Issue 5: the verdict cache through real pytest runs — hits, misses, what the key depends on,
the modes (rw, ro, refresh, off, replay), --llm-cache-clear and --llm-cache-stats."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import (
    QA_FAIL,
    QA_PASS,
    QA_ROWS,
    LLMRun,
    case_properties,
    case_system_out,
    outcomes,
    summary_section,
)

from pytest_llmjudge.testing.fake_server import FakeJudgeServer

N = len(QA_ROWS)


def entries(path: Path) -> int:
    db = path / ".llmjudge_cache" / "verdicts.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]


def test_rerun_hits_the_cache_and_says_so(llm: LLMRun) -> None:
    llm.qa_suite()
    first = llm.run("--llm-results", "results.jsonl", cache="rw")
    assert llm.server.request_count == N
    assert "from cache: 0" in summary_section(first)[0] and f"judge calls: {N}" in summary_section(first)[0]
    assert entries(llm.path) == N
    assert all(r["cached"] is False for r in llm.results())

    llm.server.reset()
    again = llm.run("--llm-results", "results.jsonl", "--junitxml", "junit.xml", "-o", "junit_family=xunit1",
                    cache="rw")
    assert llm.server.request_count == 0
    assert outcomes(again) == outcomes(first) == {"passed": QA_PASS, "failed": QA_FAIL}
    head = summary_section(again)[0]
    assert f"from cache: {N}" in head and "judge calls: 0" in head
    rows = llm.results()
    assert len(rows) == N and all(r["cached"] is True for r in rows)
    props = case_properties(llm.junit())
    assert all(p["llm.correctness.cached"] == "true" for p in props.values())

    llm.run("--junitxml", "junit.xml", cache="rw")  # xunit2: the system-out lines say so too
    assert all(v["llm.correctness.cached"] == "true" for v in case_system_out(llm.junit()).values())
    assert llm.server.request_count == 0


def test_cache_is_on_by_default_at_the_rootdir(llm: LLMRun) -> None:
    llm.qa_suite()
    (llm.path / "sub").mkdir()
    (llm.path / "test_qa.py").rename(llm.path / "sub" / "test_qa.py")
    (llm.path / "qa.jsonl").rename(llm.path / "sub" / "qa.jsonl")
    llm.pytester.makeini("[pytest]\n")  # the rootdir
    llm.run("sub", cache=None)
    assert (llm.path / ".llmjudge_cache" / "verdicts.sqlite3").exists()
    assert not (llm.path / "sub" / ".llmjudge_cache").exists()
    llm.server.reset()
    llm.run("sub", cache=None)
    assert llm.server.request_count == 0


def test_cached_verdicts_are_re_decided_for_a_new_threshold(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="rw")
    llm.server.reset()
    # same requests (the threshold is not part of the prompt): cache hits, passed re-decided
    test = (llm.path / "test_qa.py").read_text().replace("threshold=0.6", "threshold=0.01")
    (llm.path / "test_qa.py").write_text(test)
    result = llm.run(cache="rw")
    assert llm.server.request_count == 0
    assert outcomes(result) == {"passed": QA_PASS | QA_FAIL}


def test_cache_hits_with_concurrency_and_sequentially(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-concurrency", "1", cache="rw")
    llm.server.reset()
    result = llm.run(cache="rw")  # the concurrent run reads what the sequential one wrote
    assert llm.server.request_count == 0
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}


# -- what the key depends on ----------------------------------------------------------
METRIC_TEST = '''
from typing import Literal
from pydantic import BaseModel
from pytest_llmjudge import Metric

class Grade(BaseModel):
    reason: str
    score: Literal[0, 1, 2, 3]

grade = Metric(name="grade", version="{version}", schema=Grade, score=lambda v: v.score, scale=(0, 3),
               prompt="{prompt}\\n\\nREFERENCE:\\n{{expected}}\\n\\nANSWER:\\n{{output}}")

def test_grade(assert_llm_score):
    assert_llm_score("Paris is the capital.", metric=grade, expected="Paris is the capital.")
'''


def test_editing_a_custom_metric_invalidates_its_verdicts(llm: LLMRun) -> None:
    def run(version: str, prompt: str) -> int:
        llm.makepyfile(METRIC_TEST.format(version=version, prompt=prompt), name="test_metric")
        llm.server.reset()
        llm.run(cache="rw").assert_outcomes(passed=1)
        return llm.server.request_count

    assert run("1", "Grade the answer.") == 1
    assert run("1", "Grade the answer.") == 0  # unchanged: a hit
    assert run("1", "Grade the answer strictly.") == 1  # prompt edited: a miss
    assert run("2", "Grade the answer strictly.") == 1  # version bumped: a miss
    assert run("2", "Grade the answer strictly.") == 0
    assert run("1", "Grade the answer.") == 0  # the old verdict is still there


def test_key_changes_with_messages_model_and_endpoint(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="rw")
    assert llm.server.request_count == N

    # one answer changes: only that case is judged again
    rows = [dict(r) for r in QA_ROWS]
    rows[0]["answer"] = "Paris, the capital of France."
    llm.qa_suite(rows=rows)
    llm.server.reset()
    llm.run(cache="rw")
    assert llm.server.request_count == 1

    # another model on the same endpoint
    llm.server.reset()
    llm.pytester.runpytest_inprocess("--llm-judge", "openai:other-model", "--llm-base-url", llm.server.url)
    assert llm.server.request_count == N
    assert {body["model"] for body in llm.server.requests} == {"other-model"}

    # the same model on another endpoint (host:port)
    with FakeJudgeServer() as other:
        llm.pytester.runpytest_inprocess("--llm-judge", "openai:fake", "--llm-base-url", other.url)
        assert other.request_count == N
    # and back: still cached
    llm.server.reset()
    llm.run(cache="rw")
    assert llm.server.request_count == 0


def test_key_changes_with_the_expected_answer_and_input(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="rw")
    rows = [dict(r) for r in QA_ROWS]
    rows[1]["expected_output"] = rows[1]["expected_output"] + " Exactly."
    rows[2]["input"] = rows[2]["input"].lower()
    llm.qa_suite(rows=rows)
    llm.server.reset()
    llm.run(cache="rw")
    assert llm.server.request_count == 2


def test_key_does_not_depend_on_the_api_key(llm: LLMRun, monkeypatch: pytest.MonkeyPatch) -> None:
    llm.qa_suite()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FIRSTKEY000000000")
    llm.run(cache="rw")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-OTHERKEY111111111")
    llm.server.reset()
    llm.run(cache="rw")
    assert llm.server.request_count == 0  # same key: the credential is not hashed into it
    raw = b"".join(p.read_bytes() for p in (llm.path / ".llmjudge_cache").iterdir() if p.is_file())
    assert b"FIRSTKEY" not in raw and b"OTHERKEY" not in raw


def test_repeat_samples_are_cached_per_sample_index(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-repeat", "3", cache="rw")
    first = llm.server.request_count
    assert first == 3 * N
    assert {body.get("temperature") for body in llm.server.requests} != {0}
    llm.server.reset()
    llm.run("--llm-repeat", "3", cache="rw")
    assert llm.server.request_count == 0
    llm.server.reset()
    llm.run(cache="rw")  # one greedy sample: other sampling parameters, another key
    assert llm.server.request_count == N


# -- modes -----------------------------------------------------------------------------
def test_ro_reads_but_never_writes(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="ro")
    assert llm.server.request_count == N
    assert entries(llm.path) == 0
    llm.server.reset()
    llm.run(cache="ro")
    assert llm.server.request_count == N  # nothing was stored
    llm.run(cache="rw")
    llm.server.reset()
    result = llm.run("--llm-results", "results.jsonl", cache="ro")
    assert llm.server.request_count == 0  # ro reads
    assert all(r["cached"] for r in llm.results())
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}


def test_refresh_never_reads_but_writes(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="refresh")
    assert llm.server.request_count == N and entries(llm.path) == N  # writes
    llm.server.reset()
    result = llm.run("--llm-results", "results.jsonl", cache="refresh")
    assert llm.server.request_count == N  # does not read
    assert not any(r["cached"] for r in llm.results())
    assert entries(llm.path) == N
    assert "from cache: 0" in summary_section(result)[0]
    llm.server.reset()
    llm.run(cache="rw")
    assert llm.server.request_count == 0  # what refresh wrote is read back


def test_off_neither_reads_nor_writes(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="off")
    llm.run(cache="off")
    assert llm.server.request_count == 2 * N
    assert not (llm.path / ".llmjudge_cache").exists()


def test_replay_miss_fails_the_test_clearly_without_a_request(llm: LLMRun) -> None:
    llm.qa_suite()
    rows = [dict(r) for r in QA_ROWS]
    llm.qa_suite(rows=rows[:3])
    llm.run(cache="rw")  # record three of the six
    llm.qa_suite()
    llm.server.reset()
    result = llm.run("--llm-results", "results.jsonl", cache="replay")
    assert llm.server.request_count == 0
    got = outcomes(result)
    assert got["failed"] >= {"author", "speed", "river"}
    result.stdout.fnmatch_lines([
        "*ReplayMissError: no cached verdict for this request and --llm-cache-mode is replay*"])
    assert "speed" not in got.get("passed", set())  # speed would pass if judged: it was not
    row = {r["test_id"].split("[")[1][:-1]: r for r in llm.results()}
    assert row["speed"]["error"].startswith("ReplayMissError")
    assert row["capital"]["cached"] is True
    lines = summary_section(result)
    assert "judge calls: 0" in lines[0]
    assert any(line.startswith("judge errors (3)") for line in lines)


def test_replay_hit_needs_no_network(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="rw")
    llm.server.stop()  # nothing listens any more
    result = llm.run(cache="replay")
    assert outcomes(result) == {"passed": QA_PASS, "failed": QA_FAIL}


def test_cache_clear_and_stats(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run(cache="rw")
    result = llm.run("--llm-cache-stats", cache="rw")
    [line] = [line for line in result.outlines if line.startswith("llmjudge cache:")]
    assert line.startswith(f"llmjudge cache: {N} entries, ") and "KiB in " in line
    assert ".llmjudge_cache" in line
    llm.server.reset()
    result = llm.run("--llm-cache-clear", "--llm-cache-stats", cache="rw")
    assert llm.server.request_count == N  # cleared first, then judged again
    [line] = [line for line in result.outlines if line.startswith("llmjudge cache:")]
    assert line.startswith(f"llmjudge cache: {N} entries")
    llm.pytester.makepyfile(test_qa="def test_nothing():\n    pass\n")
    llm.run("--llm-cache-clear", cache="rw")
    assert entries(llm.path) == 0


def test_cache_dir_option_and_ignore_file(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-cache-dir", "elsewhere/cache", cache="rw")
    assert not (llm.path / ".llmjudge_cache").exists()
    assert (llm.path / "elsewhere" / "cache" / "verdicts.sqlite3").exists()
    assert (llm.path / "elsewhere" / "cache" / ".gitignore").read_text().strip().endswith("*")
    llm.server.reset()
    llm.run("--llm-cache-dir", "elsewhere/cache", cache="rw")
    assert llm.server.request_count == 0

# xdist workers writing one cache: tests/plugin/test_concurrency.py::test_xdist_summary_aggregates_all_workers
