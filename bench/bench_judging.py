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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    n, latency, conc = args.cases, args.latency, args.concurrency

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
