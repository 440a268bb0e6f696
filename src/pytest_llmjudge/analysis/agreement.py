"""How well a judge agrees with human labels: shared by the preflight (``--llm-preflight``)
and ``llmjudge calibrate``, on top of the statistics in :mod:`pytest_llmjudge.analysis.stats`.

* :func:`pass_fail_word` — the words a label may use for pass and fail;
* :func:`label_agrees` — the preflight's rule for one labelled case;
* :func:`category`, :func:`interpret_kappa` — scores as rubric levels for kappa, and its reading;
* :func:`binary_agreement` — pass/fail agreement at a threshold, counted both ways.

The weak-judge warning built from measured figures is :mod:`pytest_llmjudge.analysis.judge_agreement`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: label words for a passing and a failing answer (case and surrounding spaces ignored)
PASS_WORDS = frozenset({"pass", "passed", "true", "yes", "y", "good", "correct"})
FAIL_WORDS = frozenset({"fail", "failed", "false", "no", "n", "bad", "incorrect"})
#: a score within this of the expected score agrees with it: one rubric point on the 0-5 scale
SCORE_TOLERANCE = 0.2


def pass_fail_word(text: str) -> bool | None:
    """True for a pass word, False for a fail word, None for anything else."""
    word = text.strip().lower()
    if word in PASS_WORDS:
        return True
    if word in FAIL_WORDS:
        return False
    return None


def label_agrees(passed: bool, score: float, *, label: bool | None, expected_score: float | None,
                 tolerance: float = SCORE_TOLERANCE) -> bool:
    """A verdict agrees with a pass/fail ``label`` when its pass/fail matches, else with an
    ``expected_score`` (normalized) when its score is within ``tolerance`` of it."""
    if label is not None:
        return passed == label
    if expected_score is None:
        raise ValueError("label_agrees needs a label or an expected score")
    return abs(score - expected_score) <= tolerance


def category(normalized: float, k: int) -> int:
    """The nearest of ``k`` equally spaced levels of a score in [0, 1] (halves round up)."""
    value = min(1.0, max(0.0, normalized)) * (k - 1)
    return int(math.floor(value + 0.5 + 1e-9))


def interpret_kappa(kappa: float | None) -> str:
    """Landis & Koch's labels for a kappa value."""
    if kappa is None:
        return "undefined"
    if kappa < 0:
        return "poor (worse than chance)"
    if kappa <= 0.20:
        return "slight"
    if kappa <= 0.40:
        return "fair"
    if kappa <= 0.60:
        return "moderate"
    if kappa <= 0.80:
        return "substantial"
    return "almost perfect"


def binary_agreement(human: Sequence[bool], judge: Sequence[bool]) -> dict[str, float | int | None]:
    """Pass/fail agreement at a threshold; "positive" is a *fail* (what a gate must catch).

    Returns counts (both_pass, both_fail, judge_pass_human_fail, judge_fail_human_pass),
    accuracy, the judge's precision and recall at catching failures, and their F1.
    """
    if len(human) != len(judge):
        raise ValueError("human and judge must have the same length")
    both_pass = sum(1 for h, j in zip(human, judge) if h and j)
    both_fail = sum(1 for h, j in zip(human, judge) if not h and not j)
    missed = sum(1 for h, j in zip(human, judge) if not h and j)  # judge passes a bad answer
    false_alarm = sum(1 for h, j in zip(human, judge) if h and not j)
    n = len(human)
    accuracy = (both_pass + both_fail) / n if n else None
    precision = both_fail / (both_fail + false_alarm) if both_fail + false_alarm else None
    recall = both_fail / (both_fail + missed) if both_fail + missed else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    return {
        "n": n,
        "both_pass": both_pass,
        "both_fail": both_fail,
        "judge_pass_human_fail": missed,
        "judge_fail_human_pass": false_alarm,
        "accuracy": accuracy,
        "fail_precision": precision,
        "fail_recall": recall,
        "fail_f1": f1,
    }
