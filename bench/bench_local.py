"""Benchmark the local judge (SmolLM2-135M by default) on this machine.

Prints, side by side in one run: cold load (GGUF -> safetensors conversion) and warm load (in
process, and in a fresh process with imports); seconds per verdict and ms/token constrained vs
unconstrained (same number of tokens, batch of one); batch-8 vs sequential throughput two ways: one
batch of 8 requests (it drains: its rows end at different lengths) and a sustained queue four
batches deep (finished rows leave, queued requests take their places); and one thread per case
calling ``judge()`` at once (the batching queue).

    nice python bench/bench_local.py [--spec local:smollm2-135m] [--cases 8] [--repeat 2] [--skip-cold]

Targets (issue 13): on the default (public-API) path, constrained <= 1.15x unconstrained per token;
batch-8 sustained >= 2x sequential throughput; warm load <= 4 s in a fresh process. There is no
separate fast path (the earlier one used private torch/transformers/lm-format-enforcer APIs and
was dropped), so there are no fast-path figures to print beside these.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pytest_llmjudge.judges.base import JudgeRequest, JudgeResponse
from pytest_llmjudge.judges.local import engine as le, judge as lj, model as lm
from pytest_llmjudge.judges.local.constraint import SamplingKey
from pytest_llmjudge.metrics.base import MetricInputs
from pytest_llmjudge.metrics.builtin import CORRECTNESS

CASES = [
    ("What is the capital of France?", "Paris", "The capital of France is Paris."),
    ("How many legs does a spider have?", "Eight", "Spiders have six legs."),
    ("What is H2O?", "Water", "H2O is the chemical formula of water."),
    ("Who wrote Hamlet?", "William Shakespeare", "Hamlet was written by Charles Dickens."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius", "It boils at 100 °C."),
    ("What is the largest planet?", "Jupiter", "Jupiter is the largest planet in the solar system."),
    ("What gas do plants absorb?", "Carbon dioxide", "Plants absorb oxygen at night only."),
    ("What is 7 times 8?", "56", "7 times 8 is 54."),
]


def requests(n: int) -> list[JudgeRequest]:
    out = []
    for i in range(n):
        question, expected, answer = CASES[i % len(CASES)]
        inputs = MetricInputs(output=answer, input=question, expected=expected)
        out.append(JudgeRequest(
            messages=CORRECTNESS.messages(inputs), schema=CORRECTNESS.schema,
            score_field=CORRECTNESS.score_field, score_values=CORRECTNESS.score_values(),
        ))
    return out


def tokens(responses: list) -> int:
    return sum(r.usage["completion_tokens"] for r in responses if isinstance(r, JudgeResponse))


def fresh_process_load(model: str, cache_dir: str) -> tuple[float, float]:
    """Seconds for a new Python process to import and build the judge (import included), and to
    its first verdict (a one-word JSON reply)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = (
        f"import sys; sys.path.insert(0, {src!r}); import time; t = time.perf_counter(); "
        "from pytest_llmjudge.judges.local import make_local_judge; "
        f"j = make_local_judge({model!r}, cache_dir={cache_dir!r}); print(time.perf_counter() - t); "
        "from pydantic import BaseModel\n"
        "class A(BaseModel):\n    answer: str\n"
        "j.complete([{'role': 'user', 'content': 'Capital of France? One word.'}], schema=A); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    load, first = out.stdout.strip().splitlines()[-2:]
    return float(load), float(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="local:smollm2-135m")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best is kept)")
    parser.add_argument("--skip-cold", action="store_true", help="skip the GGUF conversion timing")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the model's, float32)")
    args = parser.parse_args()
    model = args.spec.partition(":")[2]
    cache_dir = str(lm.default_cache_dir())
    print(f"# local judge bench: {args.spec}, {os.cpu_count()} CPUs, cache {cache_dir}, "
          f"load average {os.getloadavg()[0]:.2f} (other processes skew every figure)")

    # ---- load times
    if not args.skip_cold and lm.resolve_model(model).gguf_file:
        cold_dir = tempfile.mkdtemp(prefix="llmjudge-cold-")
        try:
            started = time.perf_counter()
            lj.make_local_judge(model, cache_dir=cold_dir)
            print(f"cold load (GGUF convert + load):      {time.perf_counter() - started:6.2f} s")
        finally:
            shutil.rmtree(cold_dir, ignore_errors=True)
            lj.loaded_engine.cache_clear()
    lj.make_local_judge(model)  # make sure the default cache holds the converted copy
    lj.loaded_engine.cache_clear()
    started = time.perf_counter()
    judge = lj.make_local_judge(model, **({"dtype": args.dtype} if args.dtype else {}))
    print(f"warm load (in process, import done):  {time.perf_counter() - started:6.2f} s")
    fresh = [fresh_process_load(model, cache_dir) for _ in range(args.repeat)]
    print(f"warm load (fresh process, w/ import): {min(f[0] for f in fresh):6.2f} s  (target <= 4 s); "
          f"to its first verdict {min(f[1] for f in fresh):.2f} s")

    engine = judge.engine
    reqs = requests(args.cases)
    judge.judge(reqs[0])  # warm-up

    # ---- constrained vs unconstrained, per token, batch of one
    constrained_pt: list[float] = []
    free_pt: list[float] = []
    enforcer_pt: list[float] = []
    for _ in range(args.repeat):
        for request in reqs:
            job = judge._request_job(request)
            engine.generate([job])
            stats = dict(engine.last_stats)
            response = job.result
            assert isinstance(response, JudgeResponse), response
            # per decode step, prefill excluded (the free run finds the whole prompt remembered)
            constrained_pt.append((stats["generate_s"] - stats["prefill_s"]) / stats["steps"])
            enforcer_pt.append(stats["enforcer_s"] / stats["steps"])
            n = int(stats["steps"])  # the same number of steps, free text, nothing stops it early
            free = le.Job(request.messages, None, SamplingKey(max_new_tokens=n))
            engine.generate([free], min_new_tokens=n)
            assert engine.last_stats["steps"] == n
            free_stats = engine.last_stats
            free_pt.append((free_stats["generate_s"] - free_stats["prefill_s"]) / free_stats["steps"])
    c, u, e = statistics.median(constrained_pt), statistics.median(free_pt), statistics.median(enforcer_pt)
    print(f"constrained:   {1000 * c:7.1f} ms/token  {1 / c:6.1f} tokens/s  (enforcer + masks {1000 * e:.1f} ms/token)")
    print(f"unconstrained: {1000 * u:7.1f} ms/token  {1 / u:6.1f} tokens/s")
    print(f"constrained / unconstrained per token: {c / u:.3f}x  (target <= 1.15x)")

    # ---- sequential vs batch-8 vs 16 threads
    best_seq = best_batch = best_threads = float("inf")
    seq_out: list = []
    batch_out: list = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        seq_out = [judge.judge(r) for r in reqs]
        best_seq = min(best_seq, time.perf_counter() - started)
        started = time.perf_counter()
        batch_out = judge.judge_batch(reqs)
        best_batch = min(best_batch, time.perf_counter() - started)
        results: list = [None] * len(reqs)

        def work(i: int, results: list = results) -> None:
            results[i] = judge.judge(reqs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(reqs))]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        best_threads = min(best_threads, time.perf_counter() - started)
    # ---- a sustained queue four batches deep: finished rows are replaced by waiting requests
    many = requests(4 * args.cases)
    queue_s = float("inf")
    queue_out: list = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        queue_out = judge.judge_batch(many)
        queue_s = min(queue_s, time.perf_counter() - started)

    # ---- the same, all rows forced to 40 tokens (free text): batching without ragged lengths
    forced = SamplingKey(max_new_tokens=40)
    best_seq_f = best_batch_f = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for r in reqs:
            engine.generate([le.Job(r.messages, None, forced)], min_new_tokens=40)
        best_seq_f = min(best_seq_f, time.perf_counter() - started)
        started = time.perf_counter()
        engine.generate([le.Job(r.messages, None, forced) for r in reqs], min_new_tokens=40)
        best_batch_f = min(best_batch_f, time.perf_counter() - started)
    n = len(reqs)
    same = [a.text == b.text for a, b in zip(seq_out, batch_out)]
    print(f"sequential: {best_seq / n:6.2f} s/verdict  {tokens(seq_out) / best_seq:6.1f} tokens/s")
    size = judge.options.batch_size
    print(f"batch-{size}:    {best_batch / n:6.2f} s/verdict  {tokens(batch_out) / best_batch:6.1f} tokens/s")
    print(f"threads:    {best_threads / n:6.2f} s/verdict  ({n} threads calling judge() at once: the plugin's path)")
    same_queue = [a.text == b.text for a, b in zip(seq_out * 4, queue_out)]
    print(f"one batch of {n} / sequential: {best_seq / best_batch:.2f}x  "
          f"(includes the drain: verdicts of {min(tokens([r]) for r in seq_out)}-"
          f"{max(tokens([r]) for r in seq_out)} tokens); "
          f"outputs equal sequential: {sum(same)}/{n}")
    print(f"sustained, queue of {len(many)} (batches of {size}): {queue_s / len(many):6.2f} s/verdict  "
          f"{tokens(queue_out) / queue_s:6.1f} tokens/s  (at most {int(engine.last_stats['max_active'])} rows "
          f"at once, {int(engine.last_stats['rows'])} rows in one continuous run)")
    print(f"batch-{size} / sequential throughput, sustained (tokens/s): "
          f"{(tokens(queue_out) / queue_s) / (tokens(seq_out) / best_seq):.2f}x  (target >= 2x); "
          f"outputs equal sequential: {sum(same_queue)}/{len(many)}")
    print(f"equal lengths ({n} x 40 tokens, unconstrained): sequential {n * 40 / best_seq_f:.1f} tokens/s, "
          f"batch {n * 40 / best_batch_f:.1f} tokens/s: {best_seq_f / best_batch_f:.2f}x")
    print(f"# load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
