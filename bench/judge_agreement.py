"""How well does a judge separate right answers from wrong ones? Measured on labelled sets.

Each set is a JSONL file of (input, expected_output, output, label) rows where every question
(``pair``) has one right (label 1) and one wrong (label 0) candidate; bench/data/ holds three,
built from TruthfulQA and HaluEval (bench/data/NOTICE.md). For every metric and set it prints:

* ROC AUC of the score against the label (0.5 = a coin; Mann-Whitney, ties count half);
* pairwise accuracy: how often the right candidate scores above the wrong one for the same
  question (ties count half);
* Spearman rho of score and label, and quadratic-weighted kappa of the pass/fail verdict at
  ``--threshold`` against the label (for graded labels, on five levels), and the balanced
  accuracy of that verdict (mean of right answers passed and wrong answers failed; binary labels);
* a 95% percentile bootstrap interval for each, resampling questions (both candidates together);
* invalid verdicts (judge errors) and seconds per verdict: the wall time of the whole set
  divided by its verdicts, with ``--concurrency`` requests in flight (the local judge decodes
  requests that arrive together as one batch).

    python bench/judge_agreement.py bench/data/truthfulqa_test.jsonl bench/data/halueval_qa_test.jsonl \\
        --judge local:smollm2-135m --metric correctness --metric similarity

``--metric`` takes a built-in metric name (judged ones use ``--judge``; checks such as
``similarity`` need none) or ``module:attribute`` naming a Metric. Verdicts are not cached unless
``--cache-mode rw`` is given, so the time per verdict is the judge's. ``--markdown`` prints the
table rows the README uses; ``--dump FILE`` writes every verdict's score and details (for the
likelihood form, its ``gain``) as JSONL, e.g. to find a cut on the dev split. ``--save`` writes
the figures of judged metrics and checks (kappa and balanced accuracy at ``--threshold`` too) to
the package's ``src/pytest_llmjudge/data/judge_agreement.json`` (replacing the records of the
same judge, metric and set), from which a run's summary says whether its judge is fit to gate on; a
set whose rows are marked ``"split": "dev"`` (the tuning split) is never saved, nor are metrics
given as ``module:attribute`` (variants a run does not use; their rows are labelled by that spec).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmjudge.analysis import agreement, stats
from pytest_llmjudge.cli.options import add_model_options
from pytest_llmjudge.errors import JudgeError
from pytest_llmjudge.judging.evaluation import evaluate
from pytest_llmjudge.metrics import AnyMetric, MetricInputs
from pytest_llmjudge.workflows.calibrate import load_metric
from pytest_llmjudge.workflows.common import build_cache, build_judge, close_quietly

BOOTSTRAP = 2000
REPO = Path(__file__).resolve().parent.parent
AGREEMENT_FILE = REPO / "src" / "pytest_llmjudge" / "data" / "judge_agreement.json"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Row:
    pair: str
    inputs: MetricInputs
    label: float


@dataclass(frozen=True)
class Scored:
    pair: str
    label: float
    score: float
    details: Mapping[str, Any] | None = None


def load_rows(path: Path, limit: int | None) -> list[Row]:
    rows: list[Row] = []
    pairs: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                row = Row(pair=str(data.get("pair", data.get("id", number))),
                          inputs=MetricInputs(output=data["output"], input=data.get("input"),
                                              expected=data.get("expected_output"), context=data.get("context")),
                          label=float(data["label"]))
            except (ValueError, KeyError, TypeError) as exc:
                sys.exit(f"{path}:{number}: not a labelled row ({type(exc).__name__}: {exc})")
            if row.pair not in pairs:
                pairs.append(row.pair)
            rows.append(row)
    if limit is not None:
        keep = set(pairs[:limit])
        rows = [r for r in rows if r.pair in keep]
    return rows


# --------------------------------------------------------------------------- statistics


def roc_auc(items: Sequence[Scored]) -> float | None:
    """ROC AUC with binary labels (label >= 0.5 is positive)."""
    return stats.roc_auc([s.score for s in items], [s.label >= 0.5 for s in items])


def pairwise_accuracy(items: Sequence[Scored]) -> float | None:
    """Share of questions whose higher-labelled candidate scores higher (ties count half)."""
    by_pair: dict[str, list[Scored]] = {}
    for s in items:
        by_pair.setdefault(s.pair, []).append(s)
    wins = []
    for group in by_pair.values():
        for a in group:
            for b in group:
                if a.label > b.label:
                    wins.append(1.0 if a.score > b.score else 0.5 if a.score == b.score else 0.0)
    return statistics.fmean(wins) if wins else None


def spearman(items: Sequence[Scored]) -> float | None:
    return stats.spearman([s.label for s in items], [s.score for s in items])


def kappa_at(threshold: float) -> Callable[[Sequence[Scored]], float | None]:
    def kappa(items: Sequence[Scored]) -> float | None:
        graded = len({s.label for s in items}) > 2
        k = 5 if graded else 2
        labels = [agreement.category(s.label, k) if graded else int(s.label >= 0.5) for s in items]
        judged = [agreement.category(s.score, k) if graded else int(s.score >= threshold) for s in items]
        return stats.quadratic_kappa(labels, judged, k)
    return kappa


def balanced_accuracy_at(threshold: float) -> Callable[[Sequence[Scored]], float | None]:
    """Mean of the pass rate of right answers and the fail rate of wrong ones at ``threshold``."""
    def balanced(items: Sequence[Scored]) -> float | None:
        right = [s.score >= threshold for s in items if s.label >= 0.5]
        wrong = [s.score < threshold for s in items if s.label < 0.5]
        if not right or not wrong:
            return None
        return (statistics.fmean(right) + statistics.fmean(wrong)) / 2
    return balanced


def dump_scores(path: Path, table: Sequence[dict]) -> None:
    """One JSON line per verdict: set, metric, question, label, score and the metric's details."""
    with path.open("w", encoding="utf-8") as handle:
        for r in table:
            for s in r["scored"]:
                handle.write(json.dumps({"set": r["set"], "metric": r["metric"], "pair": s.pair,
                                         "label": s.label, "score": s.score, "details": s.details}) + "\n")


def bootstrap(items: Sequence[Scored], statistic: Callable[[Sequence[Scored]], float | None],
              seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high): percentile bootstrap over questions."""
    estimate = statistic(items)
    by_pair: dict[str, list[Scored]] = {}
    for s in items:
        by_pair.setdefault(s.pair, []).append(s)
    groups = list(by_pair.values())
    rng = random.Random(seed)
    values = []
    for _ in range(BOOTSTRAP):
        # each draw is its own question, even when the same question is drawn twice
        sample = [Scored(str(k), s.label, s.score) for k in range(len(groups)) for s in rng.choice(groups)]
        value = statistic(sample)
        if value is not None:
            values.append(value)
    if estimate is None or len(values) < BOOTSTRAP // 2:
        return estimate, None, None
    values.sort()
    tail = (1 - CONFIDENCE) / 2
    return estimate, values[int(tail * len(values))], values[min(len(values) - 1, int((1 - tail) * len(values)))]


# --------------------------------------------------------------------------- run


def score_rows(metric: AnyMetric, rows: Sequence[Row], judge, cache, concurrency: int,
               threshold: float) -> tuple[list[Scored], int, float, list[str]]:
    """(scored rows, judge errors, wall seconds, first error messages)."""
    def one(row: Row) -> Scored | str:
        try:
            verdict = evaluate(metric, row.inputs, judge if metric.needs_judge else None,
                               threshold=threshold, cache=cache)
        except JudgeError as exc:
            return str(exc)
        return Scored(row.pair, row.label, verdict.score, dict(verdict.details or {}))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, rows))
    wall = time.perf_counter() - started
    scored = [r for r in results if isinstance(r, Scored)]
    errors = [r for r in results if isinstance(r, str)]
    return scored, len(errors), wall, errors[:3]


def splits_of(path: Path) -> set[str]:
    """The ``split`` values the rows of a set carry (``dev`` marks the tuning split)."""
    with path.open(encoding="utf-8") as handle:
        return {str(json.loads(line).get("split", "")) for line in handle if line.strip()}


def save_records(path: Path, results: Sequence[dict], command: str) -> None:
    """Merge ``results`` into the agreement file at ``path`` (same judge, metric and set: replaced)."""
    records = json.loads(path.read_text(encoding="utf-8"))["records"] if path.is_file() else []
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    load = round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None
    fresh = []
    for r in results:
        if not r.get("builtin", True) or r["auc"][0] is None or r["pairwise"][0] is None:
            continue  # a variant (module:attribute) is not what a run uses: printed, never saved
        fresh.append({
            "judge": r["judge"], "metric": r["metric_name"], "dataset": r["set"],
            "auc": round(r["auc"][0], 4), "auc_interval": _interval(r["auc"]),
            "pairwise": round(r["pairwise"][0], 4), "pairwise_interval": _interval(r["pairwise"]),
            "spearman": None if r["spearman"][0] is None else round(r["spearman"][0], 4),
            "threshold": r.get("threshold"), "kappa": _estimate(r.get("kappa")),
            "balanced_accuracy": _estimate(r.get("balanced_accuracy")),
            "verdicts": r["n"], "invalid": r["invalid"], "s_per_verdict": round(r["s_per_verdict"], 3),
            "load_average": load, "command": command, "date": date,
        })
    keys = {(f["judge"], f["metric"], f["dataset"]) for f in fresh}
    kept = [r for r in records if (r.get("judge"), r.get("metric"), r.get("dataset")) not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"about": "written by bench/judge_agreement.py --save; do not edit by hand",
                                "records": kept + fresh}, indent=1) + "\n", encoding="utf-8")


def _estimate(triple: tuple[float | None, float | None, float | None] | None) -> float | None:
    return None if triple is None or triple[0] is None else round(triple[0], 4)


def _interval(triple: tuple[float | None, float | None, float | None]) -> list[float] | None:
    return None if triple[1] is None or triple[2] is None else [round(triple[1], 4), round(triple[2], 4)]


def fmt(triple: tuple[float | None, float | None, float | None]) -> str:
    value, low, high = triple
    if value is None:
        return "n/a"
    if low is None:
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", type=Path, metavar="SET.jsonl")
    parser.add_argument("--metric", action="append", metavar="NAME",
                        help="metric to score with, repeatable (default: correctness)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N questions of each set")
    parser.add_argument("--threshold", type=float, default=0.5, help="pass threshold for kappa (default: 0.5)")
    parser.add_argument("--dump", type=Path, metavar="FILE",
                        help="write every verdict's score and details (e.g. the likelihood gain) to FILE as JSONL")
    parser.add_argument("--markdown", action="store_true", help="print README table rows too")
    parser.add_argument("--save", nargs="?", const=AGREEMENT_FILE, type=Path, metavar="FILE",
                        help="merge the figures into FILE (default: the package's data/judge_agreement.json)")
    add_model_options(parser)
    parser.set_defaults(cache_mode="off")
    args = parser.parse_args(argv)
    specs = args.metric or ["correctness"]
    metrics = [load_metric(name) for name in specs]
    if args.save:
        tuning = [str(p) for p in args.sets if "dev" in splits_of(p)]
        if tuning:
            parser.error(f"--save: {', '.join(tuning)} is a tuning (dev) split; save held-out figures only")
    judge = build_judge(args) if any(m.needs_judge for m in metrics) else None
    cache = build_cache(args)
    table = []
    try:
        for path in args.sets:
            rows = load_rows(path, args.limit)
            for spec, metric in zip(specs, metrics):
                scored, errors, wall, messages = score_rows(metric, rows, judge, cache, args.concurrency,
                                                            args.threshold)
                who = f"{spec} ({judge.name})" if metric.needs_judge and judge else spec
                result = {
                    "set": path.stem, "metric": who, "metric_name": metric.name, "builtin": ":" not in spec,
                    "judge": judge.name if metric.needs_judge and judge else None, "n": len(rows), "invalid": errors,
                    "auc": bootstrap(scored, roc_auc), "pairwise": bootstrap(scored, pairwise_accuracy),
                    "spearman": bootstrap(scored, spearman), "kappa": bootstrap(scored, kappa_at(args.threshold)),
                    "balanced_accuracy": bootstrap(scored, balanced_accuracy_at(args.threshold)),
                    "threshold": args.threshold, "scored": scored,
                    "s_per_verdict": wall / max(1, len(rows)),
                }
                table.append(result)
                print(f"{path.stem:24} {who:40} n={len(rows):4} invalid={errors:3}  AUC {fmt(result['auc'])}  "
                      f"pairwise {fmt(result['pairwise'])}  Spearman {fmt(result['spearman'])}  "
                      f"kappa {fmt(result['kappa'])}  balanced acc. {fmt(result['balanced_accuracy'])}  "
                      f"{result['s_per_verdict']:.3f} s/verdict", flush=True)
                for message in messages:
                    print(f"    error: {message[:200]}")
    finally:
        close_quietly(cache, judge)
    if args.dump:
        dump_scores(args.dump, table)
        print(f"verdicts written to {args.dump}")
    if args.save:
        command = "python bench/judge_agreement.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        save_records(args.save, table, command)
        print(f"figures saved to {args.save}")
    if args.markdown:
        print("\n| set | metric (judge) | verdicts | invalid | ROC AUC [95% CI] | pairwise acc. [95% CI] "
              f"| Spearman [95% CI] | kappa at {args.threshold:g} | balanced acc. at {args.threshold:g} | s/verdict |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in table:
            print(f"| {r['set']} | {r['metric']} | {r['n']} | {r['invalid']} | {fmt(r['auc'])} | "
                  f"{fmt(r['pairwise'])} | {fmt(r['spearman'])} | {fmt(r['kappa'])} | "
                  f"{fmt(r['balanced_accuracy'])} | {r['s_per_verdict']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
