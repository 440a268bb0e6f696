"""A misbehaving judge server, whole pytest runs: what is lost and how long it takes.

Each scenario runs N judged tests (one metric each, ``llm_concurrent``, default
--llm-concurrency) in a child
pytest against the fake server (in this process), side by side in one run:

  baseline      no faults: pytest and the plugin's own time
  rate R/s      the server accepts R requests per second and answers 429 + Retry-After: 1
                beyond; the floor is N / R seconds plus the baseline, and the run should be
                within 1.3x of it
  5xx x2        every request fails twice with 500, then succeeds (--llm-max-retries 4)
  drip          the body comes one byte per 50 ms: each case must stop at --llm-timeout

and prints wall time, judge errors, requests sent and the ratio to the floor.

    python bench/bench_http_faults.py --cases 100 --rates 20,10
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

TEST_FILE = '''
import pytest

@pytest.mark.llm_concurrent
@pytest.mark.parametrize("i", range({n}))
def test_case(i, assert_llm_score):
    assert_llm_score(f"The capital of France is Paris ({{i}}).", input="What is the capital of France?",
                     expected="Paris is the capital of France.", threshold=0.5)
'''


def run_pytest(workdir: Path, args: list[str]) -> tuple[float, int, int]:
    """(wall s, passed, judge errors) of one pytest run."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *args],
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": "sk-bench"},
    )
    wall = time.perf_counter() - started
    passed = int((re.search(r"(\d+) passed", proc.stdout) or [0, 0])[1])
    errors = proc.stdout.count("JudgeError")
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"pytest failed with exit code {proc.returncode}")
    return wall, passed, errors


def judge_calls_only(server: FakeJudgeServer, n: int, threads: int = 16) -> tuple[float, int]:
    """(wall s, judge errors) of ``n`` verdicts from ``threads`` threads, without pytest."""
    import threading

    from pytest_llmjudge.judges.openai_compat import OpenAIJudge
    from pytest_llmjudge.judging.evaluation import build_request
    from pytest_llmjudge.metrics import get_metric
    from pytest_llmjudge.metrics.base import MetricInputs

    judge = OpenAIJudge("fake", base_url=server.url, timeout=30)
    metric = get_metric("correctness")
    pending, errors, lock = list(range(n)), [0], threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                i = pending.pop()
            inputs = MetricInputs(output=f"Paris ({i}).", input="Capital?", expected="Paris.")
            try:
                judge.judge(build_request(metric, inputs))
            except Exception:  # noqa: BLE001 - counted
                with lock:
                    errors[0] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    judge.close()
    return time.perf_counter() - started, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--rates", default="20,10", help="comma-separated allowed requests per second")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request (s)")
    args = parser.parse_args()
    n = args.cases

    rows = []
    with FakeJudgeServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "test_suite.py").write_text(TEST_FILE.format(n=n))
        base = ["--llm-judge", "openai:fake", "--llm-base-url", server.url, "--llm-cache-mode", "off"]

        wall, passed, errors = run_pytest(root, base)
        baseline = wall
        rows.append(("no faults (baseline)", wall, passed, errors, server.request_count, "-"))
        for rate in (float(r) for r in args.rates.split(",")):
            server.reset()
            server.rate_limit(rate, retry_after=1)
            wall, passed, errors = run_pytest(root, base)
            floor = n / rate + baseline  # the rate's floor plus pytest's own time
            rows.append((f"rate {rate:g}/s, Retry-After: 1", wall, passed, errors, server.request_count,
                         f"{wall / floor:.2f}x of {floor:.1f} s"))
            server.reset()
            server.rate_limit(rate, retry_after=1)
            wall, errors = judge_calls_only(server, n)
            rows.append(("  same, judge calls only (16 threads)", wall, n - errors, errors, server.request_count,
                         f"{wall / (n / rate):.2f}x of {n / rate:.1f} s"))

        server.reset()
        server.fail_each(500, 2)
        wall, passed, errors = run_pytest(root, [*base, "--llm-max-retries", "4"])
        rows.append(("5xx twice per request", wall, passed, errors, server.request_count, "-"))

        server.reset()
        server.drip_s = 0.05
        drip_n = min(n, 4)
        (root / "test_suite.py").write_text(TEST_FILE.format(n=drip_n))
        wall, passed, errors = run_pytest(root, [*base, "--llm-timeout", "2", "--llm-max-retries", "0"])
        rows.append((f"drip 1 B/50 ms, {drip_n} cases, timeout 2 s", wall, passed, errors,
                     server.request_count, f"{wall / 2:.2f}x of the 2 s timeout"))

    print(f"{n} cases, server latency {args.latency:g} s, default --llm-concurrency")
    header = ("scenario", "wall s", "passed", "judge errors", "requests", "vs floor")
    print("  ".join(f"{h:>14}" if i else f"{h:<38}" for i, h in enumerate(header)))
    for name, wall, passed, errors, requests, ratio in rows:
        print(f"{name:<38}  {wall:>14.2f}  {passed:>14}  {errors:>14}  {requests:>14}  {ratio:>14}")


if __name__ == "__main__":
    main()
