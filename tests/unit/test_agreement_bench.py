"""bench/judge_agreement.py's statistics and the labelled sets in bench/data/ (issue 14)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("judge_agreement_bench", ROOT / "bench" / "judge_agreement.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def scored(bench, triples):
    return [bench.Scored(pair, label, score) for pair, label, score in triples]


def test_auc_and_pairwise_accuracy(bench) -> None:
    perfect = scored(bench, [("a", 1, 0.9), ("a", 0, 0.1), ("b", 1, 0.8), ("b", 0, 0.2)])
    assert bench.roc_auc(perfect) == 1.0 and bench.pairwise_accuracy(perfect) == 1.0
    inverted = scored(bench, [("a", 1, 0.1), ("a", 0, 0.9), ("b", 1, 0.2), ("b", 0, 0.8)])
    assert bench.roc_auc(inverted) == 0.0 and bench.pairwise_accuracy(inverted) == 0.0
    # a right answer ranked above its own wrong one but below the other question's wrong one
    mixed = scored(bench, [("a", 1, 0.5), ("a", 0, 0.4), ("b", 1, 0.9), ("b", 0, 0.6)])
    assert bench.pairwise_accuracy(mixed) == 1.0 and bench.roc_auc(mixed) == 0.75
    ties = scored(bench, [("a", 1, 0.5), ("a", 0, 0.5)])
    assert bench.roc_auc(ties) == 0.5 and bench.pairwise_accuracy(ties) == 0.5


def test_bootstrap_interval_brackets_the_estimate(bench) -> None:
    items = scored(bench, [(str(i), 1, 0.6 + (i % 3) * 0.1) for i in range(30)]
                   + [(str(i), 0, 0.5 + (i % 5) * 0.1) for i in range(30)])
    value, low, high = bench.bootstrap(items, bench.pairwise_accuracy)
    assert low is not None and high is not None and low <= value <= high and high - low < 0.5


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_sets_pair_one_right_and_one_wrong_answer_and_do_not_overlap() -> None:
    sets = {name: rows(name) for name in ("truthfulqa_dev.jsonl", "truthfulqa_test.jsonl", "halueval_qa_test.jsonl")}
    questions = {}
    for name, items in sets.items():
        pairs: dict[str, list[int]] = {}
        for row in items:
            pairs.setdefault(row["pair"], []).append(row["label"])
            assert row["output"] != row["expected_output"]
        assert all(sorted(labels) == [0, 1] for labels in pairs.values()), name
        questions[name] = {row["input"] for row in items}
    assert not questions["truthfulqa_dev.jsonl"] & questions["truthfulqa_test.jsonl"]


def test_save_merges_held_out_figures_and_refuses_the_dev_split(bench, tmp_path: Path) -> None:
    from pytest_llmjudge.analysis.judge_agreement import load_measured

    def result(judge, metric, auc):
        return {"set": "truthfulqa_test", "metric_name": metric, "judge": judge, "n": 10, "invalid": 0,
                "auc": (auc, auc - 0.1, auc + 0.1), "pairwise": (0.6, 0.5, 0.7), "spearman": (0.1, 0.0, 0.2),
                "s_per_verdict": 1.0}

    path = tmp_path / "agreement.json"
    bench.save_records(path, [result("local:a", "correctness", 0.55), result(None, "similarity", 0.4)], "cmd 1")
    variant = {**result("local:a", "correctness", 0.2), "builtin": False}  # correctness_variants:compact
    bench.save_records(path, [result("local:a", "correctness", 0.66), variant], "cmd 2")
    saved = json.loads(path.read_text())["records"]
    assert sorted((r["judge"] or "", r["command"]) for r in saved) == [("", "cmd 1"), ("local:a", "cmd 2")]
    (measured,) = load_measured(path)
    assert (measured.auc, measured.auc_interval, measured.dataset) == (0.66, (0.56, 0.76), "truthfulqa_test")
    with pytest.raises(SystemExit):
        bench.main([str(DATA / "truthfulqa_dev.jsonl"), "--metric", "exact", "--save", str(path)])


def test_balanced_accuracy_and_kappa_at_the_threshold(bench) -> None:
    # right answers at 0.7 and 0.4, wrong ones at 0.3 and 0.6: half of each side on its own side of 0.5
    items = scored(bench, [("a", 1, 0.7), ("a", 0, 0.3), ("b", 1, 0.4), ("b", 0, 0.6)])
    assert bench.balanced_accuracy_at(0.5)(items) == 0.5 and bench.kappa_at(0.5)(items) == pytest.approx(0.0)
    assert bench.balanced_accuracy_at(0.35)(items) == 0.75  # both right pass, one wrong fails
    assert bench.balanced_accuracy_at(0.8)(items) == 0.5  # everything fails
    assert bench.balanced_accuracy_at(0.5)(items[:1]) is None  # no wrong answer to fail


def test_dump_writes_each_verdict_with_its_details(bench, tmp_path: Path) -> None:
    items = [bench.Scored("a", 1.0, 0.7, {"gain": 0.1}), bench.Scored("a", 0.0, 0.2, {"gain": -0.3})]
    path = tmp_path / "dump.jsonl"
    bench.dump_scores(path, [{"set": "s", "metric": "correctness (local:x)", "scored": items}])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["pair"], d["label"], d["score"], d["details"]["gain"]) for d in lines] == [
        ("a", 1.0, 0.7, 0.1), ("a", 0.0, 0.2, -0.3)]
