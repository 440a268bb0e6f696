"""Build the labelled judge-agreement sets in bench/data/ from two public datasets.

Each row is one (question, reference, candidate answer, label) triple; every question gives one
right candidate (label 1) and one wrong candidate (label 0), paired by ``pair``:

* ``truthfulqa_dev.jsonl`` / ``truthfulqa_test.jsonl`` -- TruthfulQA (Lin, Hilton & Evans 2022,
  https://github.com/sylinrl/TruthfulQA, Apache-2.0), ``TruthfulQA.csv``: the reference is
  "Best Answer", the right candidate the first "Correct Answers" entry that differs from it (a
  paraphrase or another true answer, never the reference verbatim), the wrong candidate the
  first "Incorrect Answers" entry. Questions with no second correct answer are left out. The
  questions are ordered by a hash of their text; the first 60 form the dev split (the only rows
  prompts were tuned on), the next 100 the test split.
* ``halueval_qa_test.jsonl`` -- HaluEval (Li et al. 2023, https://github.com/RUCAIBox/HaluEval,
  MIT), ``generation/qa/qa_one-turn_data.json``: the reference is the "knowledge" passage, the
  right candidate "right_answer", the wrong one "hallucinated_answer"; 100 questions by the
  same hash order, all held out (never tuned on).

    python bench/data/build_agreement_sets.py --truthfulqa TruthfulQA.csv \\
        --halueval qa_one-turn_data.json [--out bench/data]

The output is deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

DEV_QUESTIONS = 60
TEST_QUESTIONS = 100
HALUEVAL_QUESTIONS = 100


def _order(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _split_answers(cell: str) -> list[str]:
    return [a.strip() for a in cell.split(";") if a.strip()]


def _pair_rows(source: str, split: str, pair: str, question: str, reference: str,
               right: str, wrong: str) -> list[dict[str, object]]:
    base = {"set": source, "split": split, "pair": pair, "input": question, "expected_output": reference}
    return [{"id": f"{pair}-right", **base, "output": right, "label": 1},
            {"id": f"{pair}-wrong", **base, "output": wrong, "label": 0}]


def truthfulqa(path: Path) -> dict[str, list[dict[str, object]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    usable = []
    for row in rows:
        best = row["Best Answer"].strip()
        others = [a for a in _split_answers(row["Correct Answers"])
                  if a.rstrip(".").lower() != best.rstrip(".").lower() and a.lower() != "i have no comment"]
        wrong = _split_answers(row["Incorrect Answers"])
        if others and wrong:
            usable.append((row["Question"].strip(), best, others[0], wrong[0]))
    usable.sort(key=lambda item: _order(item[0]))
    out: dict[str, list[dict[str, object]]] = {"dev": [], "test": []}
    for k, (question, best, right, wrong) in enumerate(usable[: DEV_QUESTIONS + TEST_QUESTIONS]):
        split = "dev" if k < DEV_QUESTIONS else "test"
        pair = f"tqa-{_order(question)[:8]}"
        out[split] += _pair_rows("truthfulqa", split, pair, question, best, right, wrong)
    return out


def halueval(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rows.sort(key=lambda r: _order(r["question"]))
    out: list[dict[str, object]] = []
    for row in rows[:HALUEVAL_QUESTIONS]:
        pair = f"halu-{_order(row['question'])[:8]}"
        out += _pair_rows("halueval_qa", "test", pair, row["question"].strip(), row["knowledge"].strip(),
                          row["right_answer"].strip(), row["hallucinated_answer"].strip())
    return out


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} rows ({len(rows) // 2} questions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truthfulqa", type=Path, required=True, help="TruthfulQA.csv")
    parser.add_argument("--halueval", type=Path, required=True, help="HaluEval qa_one-turn_data.json")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    tqa = truthfulqa(args.truthfulqa)
    write_jsonl(args.out / "truthfulqa_dev.jsonl", tqa["dev"])
    write_jsonl(args.out / "truthfulqa_test.jsonl", tqa["test"])
    write_jsonl(args.out / "halueval_qa_test.jsonl", halueval(args.halueval))


if __name__ == "__main__":
    main()
