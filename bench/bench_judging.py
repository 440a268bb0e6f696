"""Judging throughput: N cases x 1 metric against the fake judge server at a set latency.

Runs, side by side in one process (the server lives in this process; pytest runs as a
child so its CPU time is measured apart):

  plain        the same N tests without judging: pytest's own start-up and per-test cost
  seq          --llm-concurrency 1, cache off
  concurrent   --llm-concurrency C, cache off
  cold / warm  cache on: first run fills it, the rerun must make 0 judge requests

and prints wall time, judge requests, requests/s, the ratio to the physical limit
(N x latency / C + the plain run's wall time) and the plugin's CPU per case above plain pytest.

    python bench/bench_judging.py --cases 200 --latency 0.1 --concurrency 16

With ``--workloads``, instead: concurrent cases (issue 12), each workload an ``llm_dataset`` of
N cases, cache off, best of 3, against its physical limit (N x latency / C) plus plain pytest's
start-up: judge only with the verdict ignored / read; an app call (an OpenAI-compatible request
to a second fake server at ``--app-latency``) then the judge, verdict ignored / read; the same
as an ``async def`` test with ``openai.AsyncOpenAI`` as the app; and ``--llm-concurrency 1``
against the same run with the concurrent-case machinery unregistered (``-p no:llmjudge-cases``).

    python bench/bench_judging.py --workloads --cases 200 --latency 0.1 --app-latency 0.3 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

TEST_FILE = '''
import pytest

CASES = [(f"q{{i}}", f"The answer number {{i}} is Paris, the capital of France.") for i in range({n})]

@pytest.mark.parametrize("question,answer", CASES)
def test_case(question, answer, {fixture}):
    {body}
'''
FAKE_CONFTEST = '''
from pytest_llmjudge.judges import FakeJudge

def pytest_llmjudge_make_judge(config, spec):
    if spec == "fake:inprocess":
        return FakeJudge(lambda request: {{"reason": "ok", "score": 5}}, name=spec, latency_s={latency})
'''
JUDGED = 'assert_llm_score(answer, metric="correctness", input=question, expected="Paris is the capital of France.")'
PLAIN = "assert answer"


def run_pytest(workdir: Path, args: list[str]) -> tuple[float, float, int]:
    """(wall s, child CPU s, exit code) of one pytest run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": "sk-bench"},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"pytest failed with exit code {proc.returncode}")
    return wall, cpu, proc.returncode


WORKLOAD_TEST = '''
import openai, pytest

APP = openai.OpenAI(base_url="{app_url}", api_key="sk-app", max_retries=0)
ASYNC_APP = openai.AsyncOpenAI(base_url="{app_url}", api_key="sk-app", max_retries=0)
EXPECTED = "Paris is the capital of France."
# threshold 0: every case passes, so the wall time is the cases', not the failure reports'

def app(question):
    reply = APP.chat.completions.create(model="app", messages=[{{"role": "user", "content": question}}])
    return reply.choices[0].message.content

@pytest.mark.llm_dataset("cases.jsonl")
def test_judge_ignored(case, assert_llm_score):
    assert_llm_score(case["answer"], input=case["question"], expected=EXPECTED, threshold=0.0)

@pytest.mark.llm_dataset("cases.jsonl")
def test_judge_read(case, assert_llm_score):
    v = assert_llm_score(case["answer"], input=case["question"], expected=EXPECTED, threshold=0.0)
    assert v.score >= 0 and v.reason

@pytest.mark.llm_dataset("cases.jsonl")
def test_app_judge_ignored(case, assert_llm_score):
    assert_llm_score(app(case["question"]), input=case["question"], expected=EXPECTED, threshold=0.0)

@pytest.mark.llm_dataset("cases.jsonl")
def test_app_judge_read(case, assert_llm_score):
    v = assert_llm_score(app(case["question"]), input=case["question"], expected=EXPECTED, threshold=0.0)
    assert v.score >= 0 and v.reason

@pytest.mark.llm_dataset("cases.jsonl")
async def test_async_app_judge_read(case, assert_llm_score):
    messages = [{{"role": "user", "content": case["question"]}}]
    reply = await ASYNC_APP.chat.completions.create(model="app", messages=messages)
    answer = reply.choices[0].message.content
    v = await assert_llm_score.async_(answer, input=case["question"], expected=EXPECTED, threshold=0.0)
    assert v.score >= 0 and v.reason

@pytest.mark.llm_dataset("cases.jsonl")
def test_plain(case):
    assert case["answer"]
'''


def workloads(n: int, latency: float, app_latency: float, conc: int) -> None:
    """Concurrent cases: the issue's workloads side by side, best of 3 (least wall)."""
    import json

    with FakeJudgeServer(latency=latency) as judge_server, FakeJudgeServer(latency=app_latency) as app_server, \
            tempfile.TemporaryDirectory() as tmp:
        def make(name: str, count: int) -> Path:
            directory = Path(tmp) / name
            directory.mkdir()
            rows = [{"id": f"c{i}", "question": f"What is the capital of France? ({i})",
                     "answer": f"The answer number {i} is Paris, the capital of France."} for i in range(count)]
            (directory / "cases.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
            (directory / "test_workloads.py").write_text(WORKLOAD_TEST.format(app_url=app_server.url))
            return directory

        small = max(conc, n // 4)  # one at a time is slow: fewer cases
        root, small_root = make("full", n), make("small", small)
        judge = ["--llm-judge", "openai:fake", "--llm-base-url", judge_server.url, "--llm-cache-mode", "off",
                 "-p", "no:randomly"]

        def best(select: str, extra: list[str], tries: int = 3, where: Path | None = None) -> tuple[float, int]:
            walls = []
            for _ in range(tries):
                judge_server.reset()
                wall, _, code = run_pytest(where or root, [*judge, "-k", select, *extra])
                walls.append(wall)
                if code != 0:  # every case passes: a failure would time its report, not the case
                    raise SystemExit(f"{select}: pytest exit code {code}")
            return min(walls), judge_server.request_count

        plain, _ = best("test_plain", [])
        app_ms = f"{app_latency * 1000:.0f}"
        table = []
        for name, select, per_case in (
            ("judge only, verdict ignored", "test_judge_ignored", latency),
            ("judge only, verdict read", "test_judge_read", latency),
            (f"app {app_ms} ms + judge, verdict ignored", "test_app_judge_ignored", app_latency + latency),
            (f"app {app_ms} ms + judge, verdict read", "test_app_judge_read", app_latency + latency),
            ("async def, AsyncOpenAI app + judge, read", "test_async_app_judge_read", app_latency + latency),
        ):
            wall, requests = best(select, ["--llm-concurrency", str(conc)])
            limit = n * per_case / conc
            table.append((name, wall, limit, plain, wall / (limit + plain), requests))
        with_cases, _ = best("test_judge_read", ["--llm-concurrency", "1"], where=small_root)
        without_cases, _ = best("test_judge_read", ["--llm-concurrency", "1", "-p", "no:llmjudge-cases"],
                                where=small_root)

    print(f"\n{n} cases per workload, judge {latency * 1000:.0f} ms, --llm-concurrency {conc}, cache off, best of 3")
    print(f"{'workload':44s} {'wall s':>7s} {'limit s':>8s} {'+start-up':>9s} {'ratio':>6s} {'judge req':>9s}")
    for name, wall, limit, start, ratio, requests in table:
        print(f"{name:44s} {wall:7.2f} {limit:8.2f} {start:9.2f} {ratio:5.2f}x {requests:9d}")
    print("ratio = wall / (N x latency / C + plain pytest start-up); target <= 1.3x")
    change = (with_cases / without_cases - 1) * 100
    print(f"--llm-concurrency 1, {small} cases: {with_cases:.2f} s; with the concurrent-case plugin unregistered: "
          f"{without_cases:.2f} s ({change:+.1f}%; target within 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workloads", action="store_true", help="concurrent cases: the issue 12 workloads")
    parser.add_argument("--app-latency", type=float, default=0.3)
    args = parser.parse_args()
    n, latency, conc = args.cases, args.latency, args.concurrency
    if args.workloads:
        workloads(n, latency, args.app_latency, conc)
        return

    with FakeJudgeServer(latency=latency) as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []

        def suite(name: str, cases: int, judged: bool) -> Path:
            directory = root / name
            directory.mkdir()
            body, fixture = (JUDGED, "assert_llm_score") if judged else (PLAIN, "request")
            (directory / "test_suite.py").write_text(TEST_FILE.format(n=cases, fixture=fixture, body=body))
            (directory / "conftest.py").write_text(FAKE_CONFTEST.format(latency=latency))
            return directory

        def measure(name: str, directory: Path, extra: list[str], tries: int = 3) -> tuple[float, float, int]:
            """Best of ``tries`` runs (least CPU): the machine's other load only ever adds time."""
            best = None
            for _ in range(tries):
                server.reset()
                wall, cpu, _ = run_pytest(directory, extra)
                if best is None or cpu < best[1]:
                    best = (wall, cpu, server.request_count)
            rows.append((name, *best))
            return best

        judge = ["--llm-judge", "openai:fake", "--llm-base-url", server.url]
        off = ["--llm-cache-mode", "off"]
        plain_n, plain_2n = suite("plain_n", n, False), suite("plain_4n", 4 * n, False)
        judged_n, judged_2n = suite("judged_n", n, True), suite("judged_4n", 4 * n, True)

        plain_wall, plain_cpu, _ = measure(f"plain pytest, {n} tests", plain_n, [])
        _, plain_cpu_2n, _ = measure(f"plain pytest, {4 * n} tests", plain_2n, [])
        seq = judge + off + ["--llm-concurrency", "1"]
        concurrent = judge + off + ["--llm-concurrency", str(conc)]
        seq_wall, seq_cpu, _ = measure("seq: --llm-concurrency 1", judged_n, seq, tries=1)
        conc_wall, conc_cpu, _ = measure(f"concurrent: --llm-concurrency {conc}", judged_n, concurrent)
        _, conc_cpu_2n, _ = measure(f"concurrent, {4 * n} cases", judged_2n, concurrent)
        # the same with an in-process judge: the plugin's own CPU, without the HTTP client
        inproc = ["--llm-judge", "fake:inprocess"] + off + ["--llm-concurrency", str(conc)]
        _, inproc_cpu, _ = measure("in-process judge (no HTTP)", judged_n, inproc)
        _, inproc_cpu_2n, _ = measure(f"in-process judge, {4 * n} cases", judged_2n, inproc)
        measure("cache cold (fills cache)", judged_n, judge + ["--llm-cache-clear"], tries=1)
        measure(f"cache cold, {4 * n} cases", judged_2n, judge + ["--llm-cache-clear"], tries=1)
        warm_wall, warm_cpu, warm_requests = measure("cache warm (rerun)", judged_n, judge)
        _, warm_cpu_2n, warm_requests_2n = measure(f"cache warm, {4 * n} cases", judged_2n, judge)

    limit = n * latency / conc
    # per-case costs from the slope between N and 4N cases: fixed start-up cancels out
    plain_per_case = (plain_cpu_2n - plain_cpu) / (3 * n)
    conc_per_case = (conc_cpu_2n - conc_cpu) / (3 * n)
    warm_per_case = (warm_cpu_2n - warm_cpu) / (3 * n)
    inproc_per_case = (inproc_cpu_2n - inproc_cpu) / (3 * n)
    print(f"\n{n} cases x 1 metric, judge latency {latency * 1000:.0f} ms, concurrency {conc}")
    print(f"{'run':38s} {'wall s':>8s} {'cpu s':>7s} {'requests':>9s} {'req/s':>7s}")
    for name, wall, cpu, requests in rows:
        print(f"{name:38s} {wall:8.2f} {cpu:7.2f} {requests:9d} {requests / wall:7.1f}")
    print()
    print(f"physical limit N*latency/C                  {limit:.2f} s "
          f"(+ plain pytest {plain_wall:.2f} s = {limit + plain_wall:.2f} s)")
    print(f"concurrent wall / (limit + plain pytest)    {conc_wall / (limit + plain_wall):.2f}x   (target <= 1.3x)")
    print(f"sequential wall / concurrent wall           {seq_wall / conc_wall:.1f}x")
    print(f"pytest's own CPU per test (plain)           {plain_per_case * 1000:.2f} ms")
    print(f"plugin CPU per judged case above plain      {(conc_per_case - plain_per_case) * 1000:.2f} ms   "
          "(target <= 2 ms; client + SDK, slope N->4N)")
    print(f"  of which the plugin without HTTP client   {(inproc_per_case - plain_per_case) * 1000:.2f} ms   "
          "(in-process judge, same latency)")
    startup_cpu = (conc_cpu - n * conc_per_case) - (plain_cpu - n * plain_per_case)
    print(f"plugin start-up CPU (judged run, fixed)     {startup_cpu:.2f} s")
    print(f"warm-cache rerun: judge requests            {warm_requests} and {warm_requests_2n}   (target 0)")
    print(f"warm-cache rerun: CPU per case above plain  {(warm_per_case - plain_per_case) * 1000:.2f} ms   "
          "(target <= 2 ms)")
    print(f"warm-cache rerun: wall over plain pytest    {warm_wall - plain_wall:+.2f} s for {n} cases")


if __name__ == "__main__":
    main()
