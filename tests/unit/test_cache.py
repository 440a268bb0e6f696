"""VerdictCache: the key, the modes, maintenance, and concurrent writers (threads, processes)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pytest_llmjudge.errors import JudgeError, ReplayMissError
from pytest_llmjudge.judges import FakeJudge, Sampling
from pytest_llmjudge.judges.base import JudgeRequest
from pytest_llmjudge.judging.cache import FILE_NAME, VerdictCache
from pytest_llmjudge.judging.evaluation import build_request
from pytest_llmjudge.judging.verdict import Verdict
from pytest_llmjudge.metrics import get_metric
from pytest_llmjudge.metrics.base import Metric, MetricInputs
from pytest_llmjudge.metrics.builtin import CorrectnessVerdict

CORRECTNESS = get_metric("correctness")
INPUTS = MetricInputs(output="Paris.", input="Capital of France?", expected="Paris")


class Named(FakeJudge):
    def __init__(self, name: str, endpoint: str) -> None:
        super().__init__(lambda r: {"reason": "ok", "score": 5}, name=name)
        self.endpoint = endpoint


def key(judge: object = None, metric: Metric = CORRECTNESS, inputs: MetricInputs = INPUTS,
        sampling: Sampling = Sampling(), sample_index: int = 0) -> str:
    judge = judge or Named("openai:gpt-4o-mini", "api.openai.com")
    return VerdictCache.key(judge, metric, build_request(metric, inputs, sampling, sample_index))  # type: ignore[arg-type]


def verdict(score: float = 0.8, reason: str = "fine", **kw: object) -> Verdict:
    return Verdict(metric="correctness", score=score, raw_score=score * 5, scale=(0, 5), reason=reason,
                   threshold=0.5, passed=score >= 0.5, judge="openai:gpt-4o-mini", latency_s=0.1,
                   usage={"total_tokens": 10}, **kw)


# -- the key ---------------------------------------------------------------------------
def test_key_is_a_stable_hash() -> None:
    assert key() == key()
    assert len(key()) == 64 and all(c in "0123456789abcdef" for c in key())


@pytest.mark.parametrize("change", [
    "model", "backend", "endpoint", "output", "input", "expected", "temperature", "top_p", "max_tokens",
    "seed", "sample_index", "metric_prompt", "metric_version", "metric_system", "metric_schema",
    "metric_scale", "metric_name",
])
def test_key_changes_when_any_input_changes(change: str) -> None:
    judge = Named("openai:gpt-4o-mini", "api.openai.com")
    metric, inputs, sampling, index = CORRECTNESS, INPUTS, Sampling(), 0
    if change == "model":
        judge = Named("openai:gpt-4o", "api.openai.com")
    elif change == "backend":
        judge = Named("hf:gpt-4o-mini", "api.openai.com")
    elif change == "endpoint":
        judge = Named("openai:gpt-4o-mini", "127.0.0.1:8000")
    elif change in ("output", "input", "expected"):
        inputs = MetricInputs(**{**INPUTS.__dict__, change: "something else"})
    elif change in ("temperature", "top_p", "max_tokens", "seed"):
        sampling = Sampling(**{change: 0.7 if change in ("temperature", "top_p") else 7})
    elif change == "sample_index":
        index = 1
    else:
        field = change.removeprefix("metric_")
        values = {"prompt": CORRECTNESS.prompt + " Be strict.", "version": "2",
                  "system": "You are a lenient grader.", "scale": (0, 4), "name": "correctness2"}
        if field == "schema":
            from typing import Literal

            from pydantic import BaseModel

            class Other(BaseModel):
                reason: str
                score: Literal[0, 1, 2, 3, 4, 5, 6]
            values["schema"] = Other
        metric = Metric(**{**{f: getattr(CORRECTNESS, f) for f in (
            "name", "prompt", "schema", "score", "scale", "requires", "system", "score_field", "version")},
            field: values[field]})
    assert key(judge, metric, inputs, sampling, index) != key()


def test_key_ignores_the_threshold_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    before = key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRETSECRETSECRET")
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETSECRETSECRET")
    assert key() == before


def test_key_of_a_real_openai_judge_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmjudge.judges.openai_compat import OpenAIJudge

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FIRST00000000000")
    first = OpenAIJudge("fake", base_url="http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECOND0000000000")
    second = OpenAIJudge("fake", base_url="http://127.0.0.1:9/v1")
    request = build_request(CORRECTNESS, INPUTS)
    assert VerdictCache.key(first, CORRECTNESS, request) == VerdictCache.key(second, CORRECTNESS, request)
    assert first.endpoint == "127.0.0.1:9"
    third = OpenAIJudge("fake", base_url="http://127.0.0.1:10/v1")
    assert VerdictCache.key(third, CORRECTNESS, request) != VerdictCache.key(first, CORRECTNESS, request)


# -- get / put and modes -------------------------------------------------------------
def test_put_then_get_marks_cached_and_redecides_pass(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "c")
    assert cache.get("k", 0.5) is None
    cache.put("k", verdict(0.6))
    hit = cache.get("k", 0.5)
    assert hit is not None and hit.cached is True and hit.passed is True and hit.score == 0.6
    assert hit.reason == "fine" and hit.usage == {"total_tokens": 10}
    strict = cache.get("k", 0.9)
    assert strict is not None and strict.passed is False and strict.threshold == 0.9
    cache.close()
    # persisted: a new process (a new cache object) reads it
    assert VerdictCache(tmp_path / "c").get("k", 0.5) is not None


def test_cache_directory_layout(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / ".llmjudge_cache")
    cache.put("k", verdict())
    files = {p.name for p in (tmp_path / ".llmjudge_cache").iterdir()}
    assert {FILE_NAME, "README.md", ".gitignore"} <= files
    assert (tmp_path / ".llmjudge_cache" / ".gitignore").read_text().splitlines()[-1] == "*"
    with sqlite3.connect(tmp_path / ".llmjudge_cache" / FILE_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()


def test_ro_reads_but_does_not_write(tmp_path: Path) -> None:
    VerdictCache(tmp_path, mode="rw").put("old", verdict())
    ro = VerdictCache(tmp_path, mode="ro")
    assert ro.get("old", 0.5) is not None
    ro.put("new", verdict())
    assert ro.get("new", 0.5) is None
    assert ro.stats()["entries"] == 1


def test_refresh_writes_but_does_not_read(tmp_path: Path) -> None:
    VerdictCache(tmp_path, mode="rw").put("k", verdict(0.2, "old"))
    refresh = VerdictCache(tmp_path, mode="refresh")
    assert refresh.get("k", 0.5) is None
    refresh.put("k", verdict(0.9, "new"))
    hit = VerdictCache(tmp_path, mode="rw").get("k", 0.5)
    assert hit is not None and hit.reason == "new"


def test_replay_miss_raises_a_judge_error_and_never_writes(tmp_path: Path) -> None:
    VerdictCache(tmp_path, mode="rw").put("k", verdict())
    replay = VerdictCache(tmp_path, mode="replay")
    assert replay.get("k", 0.5) is not None
    with pytest.raises(ReplayMissError, match="--llm-cache-mode is replay") as info:
        replay.get("missing", 0.5)
    assert isinstance(info.value, JudgeError) and not isinstance(info.value, AssertionError)
    replay.put("missing", verdict())
    assert replay.stats()["entries"] == 1


def test_evaluate_with_a_replay_cache_never_calls_the_judge(tmp_path: Path) -> None:
    from pytest_llmjudge.judging.evaluation import evaluate

    judge = FakeJudge(lambda r: {"reason": "ok", "score": 5})
    with pytest.raises(ReplayMissError):
        evaluate(CORRECTNESS, INPUTS, judge, threshold=0.5, cache=VerdictCache(tmp_path, mode="replay"))
    assert judge.calls == []
    rw = VerdictCache(tmp_path, mode="rw")
    first = evaluate(CORRECTNESS, INPUTS, judge, threshold=0.5, cache=rw)
    assert len(judge.calls) == 1 and first.cached is False and first.judge_calls == 1
    second = evaluate(CORRECTNESS, INPUTS, judge, threshold=0.5, cache=VerdictCache(tmp_path, mode="replay"))
    assert len(judge.calls) == 1 and second.cached is True and second.judge_calls == 0
    assert second.score == first.score and second.reason == first.reason


def test_clear_and_stats(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "c")
    assert cache.stats() == {"entries": 0, "bytes": 0, "path": str(tmp_path / "c" / FILE_NAME)}
    assert cache.clear() == 0
    for i in range(5):
        cache.put(f"k{i}", verdict())
    stats = cache.stats()
    assert stats["entries"] == 5 and stats["bytes"] > 0
    assert cache.clear() == 5
    assert cache.stats()["entries"] == 0 and cache.get("k0", 0.5) is None


def test_stored_verdict_holds_no_per_run_fields(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path)
    cache.put("k", verdict(0.9))
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        stored = json.loads(conn.execute("SELECT verdict FROM verdicts").fetchone()[0])
    assert "threshold" not in stored and "passed" not in stored and "cached" not in stored


# -- concurrent writers --------------------------------------------------------------
def test_threads_writing_concurrently_lose_nothing(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(40):
                cache.put(f"t{t}-{i}", verdict(reason=f"{t}-{i}"))
                assert cache.get(f"t{t}-{i}", 0.5) is not None
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.stats()["entries"] == 12 * 40
    assert cache.get("t7-39", 0.5).reason == "7-39"  # type: ignore[union-attr]
    cache.close()


def _process_writer(directory: str, prefix: str, count: int) -> None:
    cache = VerdictCache(directory)
    for i in range(count):
        cache.put(f"{prefix}-{i}", verdict(reason=f"{prefix}-{i}"))
    cache.close()


def test_two_processes_writing_the_same_cache_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    VerdictCache(tmp_path).put("seed", verdict())  # both open an existing WAL database...
    processes = [context.Process(target=_process_writer, args=(str(tmp_path), p, 150)) for p in "ab"]
    for process in processes:
        process.start()
    _process_writer(str(tmp_path), "main", 150)  # ...while this process writes too
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert VerdictCache(tmp_path).stats()["entries"] == 1 + 3 * 150


def _endless_writer(directory: str) -> None:
    cache = VerdictCache(directory)
    i = 0
    while True:
        cache.put(f"k{i}", verdict(reason=f"r{i}" * 50))
        i += 1


def test_a_writer_killed_mid_write_leaves_a_readable_cache(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_endless_writer, args=(str(tmp_path),))
    process.start()
    try:
        db = tmp_path / FILE_NAME
        for _ in range(3000):
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        if conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] >= 200:
                            break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.01)
    finally:
        process.kill()  # SIGKILL, mid-write
        process.join(10)
    cache = VerdictCache(tmp_path)
    with sqlite3.connect(tmp_path / FILE_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [row[0] for row in conn.execute("SELECT key FROM verdicts")]
    assert len(keys) >= 200
    for key_ in keys:  # every committed row is whole
        hit = cache.get(key_, 0.5)
        assert hit is not None and hit.reason == f"r{key_[1:]}" * 50
    cache.put("after", verdict())  # and the cache is writable again
    assert cache.get("after", 0.5) is not None


def test_request_with_same_content_shares_a_key() -> None:
    a = build_request(CORRECTNESS, INPUTS)
    b = JudgeRequest(messages=tuple(dict(m) for m in a.messages), schema=CorrectnessVerdict,
                     score_field="score", score_values=a.score_values)
    judge = Named("openai:gpt-4o-mini", "api.openai.com")
    assert VerdictCache.key(judge, CORRECTNESS, a) == VerdictCache.key(judge, CORRECTNESS, b)  # type: ignore[arg-type]
