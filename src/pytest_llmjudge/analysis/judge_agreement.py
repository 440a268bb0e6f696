"""What is known about how well a judge agrees with labels, and the warning a run shows for it.

The figures live in ``data/judge_agreement.json`` (shipped with the package), written by
``bench/judge_agreement.py --save`` on held-out labelled sets (TruthfulQA test split, HaluEval QA;
see bench/data/NOTICE.md): one record per (judge, metric, set) with the ROC AUC and pairwise
accuracy, their 95% bootstrap intervals, the verdict count, the command and the date. Nothing
here is typed in by hand. A run whose judge has a record with a ROC AUC below
:data:`TRUSTED_AUC` says so in the first line of its summary, with its worst held-out figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

#: below this ROC AUC a judge's grades are not fit to gate on
TRUSTED_AUC = 0.7
#: the shipped file of measured figures (written by bench/judge_agreement.py --save)
DATA_FILE = "data/judge_agreement.json"


@dataclass(frozen=True)
class MeasuredAgreement:
    """One measured (judge, metric, held-out set): ROC AUC and pairwise accuracy with intervals."""

    judge: str
    metric: str
    dataset: str
    auc: float
    auc_interval: tuple[float, float] | None
    pairwise: float
    pairwise_interval: tuple[float, float] | None
    verdicts: int
    command: str
    date: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MeasuredAgreement:
        def interval(value: Any) -> tuple[float, float] | None:
            return (float(value[0]), float(value[1])) if value else None

        return cls(judge=str(record["judge"]), metric=str(record["metric"]), dataset=str(record["dataset"]),
                   auc=float(record["auc"]), auc_interval=interval(record.get("auc_interval")),
                   pairwise=float(record["pairwise"]), pairwise_interval=interval(record.get("pairwise_interval")),
                   verdicts=int(record["verdicts"]), command=str(record.get("command", "")),
                   date=str(record.get("date", "")))


def load_measured(path: Path | None = None) -> tuple[MeasuredAgreement, ...]:
    """The records of ``path``, or of the shipped file; records of checks (no judge) are left out."""
    if path is None:
        text = resources.files("pytest_llmjudge").joinpath(DATA_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return tuple(MeasuredAgreement.from_record(r) for r in json.loads(text)["records"] if r.get("judge"))


@lru_cache(maxsize=1)
def _shipped() -> tuple[MeasuredAgreement, ...]:
    return load_measured()


def worst_by_judge(records: Iterable[MeasuredAgreement]) -> dict[str, MeasuredAgreement]:
    """Each judge's record with the lowest ROC AUC (its weakest held-out set and metric)."""
    worst: dict[str, MeasuredAgreement] = {}
    for record in records:
        if record.judge not in worst or record.auc < worst[record.judge].auc:
            worst[record.judge] = record
    return worst


def low_agreement_warning(judges: Iterable[str],
                          records: Iterable[MeasuredAgreement] | None = None) -> str | None:
    """One line for the summary's head when a run's judge is measured to agree poorly, else None.

    ``records`` defaults to the shipped measurements (:func:`load_measured`).
    """
    worst = worst_by_judge(_shipped() if records is None else records)
    weak = [worst[name] for name in sorted(set(judges)) if name in worst and worst[name].auc < TRUSTED_AUC]
    if not weak:
        return None
    figures = "; ".join(f"{m.judge}: ROC AUC {m.auc:.2f}, pairwise accuracy {m.pairwise:.2f} "
                        f"({m.metric} on {m.dataset}, {m.verdicts} verdicts)" for m in weak)
    return (f"WEAK JUDGE ({figures} against right/wrong labels on held-out sets, "
            f"{TRUSTED_AUC} wanted): its grades are fit for wiring, smoke tests and offline "
            "plumbing, not for gating; grade with a stronger judge (--llm-judge openai:MODEL "
            "or --llm-base-url) and check it with --llm-preflight")
