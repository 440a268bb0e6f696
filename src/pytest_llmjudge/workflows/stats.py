"""Agreement statistics for ``llmjudge calibrate``, in pure Python (no scipy/numpy).

Each function returns None where the statistic is undefined (fewer than two points, a
constant series, a single category used by both raters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..stats import average_ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's correlation coefficient."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    dx = [v - mx for v in x]
    dy = [v - my for v in y]
    sxx = sum(d * d for d in dx)
    syy = sum(d * d for d in dy)
    if sxx <= 0 or syy <= 0:
        return None
    r = sum(a * b for a, b in zip(dx, dy)) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation: Pearson's r of the average ranks (handles ties)."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    return pearson(average_ranks(x), average_ranks(y))


def confusion_matrix(a: Sequence[int], b: Sequence[int], k: int) -> list[list[int]]:
    """``m[i][j]`` = how many items rater A put in category i and rater B in category j."""
    if len(a) != len(b):
        raise ValueError("a and b must have the same length")
    matrix = [[0] * k for _ in range(k)]
    for i, j in zip(a, b):
        if not (0 <= i < k and 0 <= j < k):
            raise ValueError(f"category out of range 0..{k - 1}: {i}, {j}")
        matrix[i][j] += 1
    return matrix


def weighted_kappa(a: Sequence[int], b: Sequence[int], k: int, *, weights: str = "quadratic") -> float | None:
    """Cohen's kappa of two raters over ``k`` ordered categories (0..k-1).

    ``weights``: ``"quadratic"`` (disagreement (i-j)^2), ``"linear"`` (|i-j|) or ``"none"``
    (unweighted kappa). ``kappa = 1 - sum(w * observed) / sum(w * expected)`` with the expected
    counts from the raters' marginals.
    """
    if k < 2:
        raise ValueError("kappa needs at least two categories")
    n = len(a)
    if n == 0:
        return None
    observed = confusion_matrix(a, b, k)
    rows = [sum(r) for r in observed]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]

    def weight(i: int, j: int) -> float:
        if weights == "quadratic":
            return (i - j) ** 2 / (k - 1) ** 2
        if weights == "linear":
            return abs(i - j) / (k - 1)
        if weights == "none":
            return 0.0 if i == j else 1.0
        raise ValueError(f"unknown weights {weights!r}")

    num = sum(weight(i, j) * observed[i][j] for i in range(k) for j in range(k))
    den = sum(weight(i, j) * rows[i] * cols[j] / n for i in range(k) for j in range(k))
    if den <= 0:
        return None
    return 1.0 - num / den


def quadratic_kappa(a: Sequence[int], b: Sequence[int], k: int) -> float | None:
    """Cohen's quadratic-weighted kappa."""
    return weighted_kappa(a, b, k, weights="quadratic")


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


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
