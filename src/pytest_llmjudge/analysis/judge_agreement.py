"""What is known about how well a judge agrees with labels, and the warning a run shows for it.

The figures are measured by ``bench/judge_agreement.py`` on held-out labelled sets (TruthfulQA
test split, HaluEval QA; see bench/data/NOTICE.md) for the built-in ``correctness`` metric with
a reference; the README's judges section shows the full table and the command. A run whose
judge is listed here with an agreement below :data:`TRUSTED_AUC` says so in the first line of
its summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: below this ROC AUC a judge's grades are not fit to gate on
TRUSTED_AUC = 0.7


@dataclass(frozen=True)
class MeasuredAgreement:
    """A judge's agreement with right/wrong labels on held-out sets (worst set shown)."""

    auc: float
    pairwise: float
    measured_on: str


MEASURED: dict[str, MeasuredAgreement] = {
    # correctness (compact form), 100 verdicts per set; HaluEval QA gave AUC 0.59, pairwise 0.72
    "local:smollm2-135m": MeasuredAgreement(auc=0.53, pairwise=0.62, measured_on="TruthfulQA test split"),
}


def low_agreement_warning(judges: Iterable[str]) -> str | None:
    """One line for the summary's head when a run's judge is known to agree poorly, else None."""
    weak = [(name, MEASURED[name]) for name in sorted(set(judges))
            if name in MEASURED and MEASURED[name].auc < TRUSTED_AUC]
    if not weak:
        return None
    figures = "; ".join(f"{name}: ROC AUC {m.auc:.2f}, pairwise accuracy {m.pairwise:.2f}"
                        for name, m in weak)
    return (f"WEAK JUDGE ({figures} against right/wrong labels on held-out sets, "
            f"{TRUSTED_AUC} wanted): its grades are fit for wiring, smoke tests and offline "
            "plumbing, not for gating; grade with a stronger judge (--llm-judge openai:MODEL "
            "or --llm-base-url) and check it with --llm-preflight")
