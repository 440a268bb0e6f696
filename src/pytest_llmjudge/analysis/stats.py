"""Small statistics for judge scores: the standard library's `statistics` where it has them
(normal quantiles, Pearson), written out where only scipy has them (Student t, exact Wilcoxon).

* :func:`wilson_interval` — Wilson score interval of a pass rate.
* :func:`mean_interval` — interval of a mean score: Student t (default) or percentile bootstrap.
* :func:`paired_bootstrap_diff` — paired (expanded) percentile bootstrap of ``mean(current - baseline)``.
* :func:`wilcoxon_signed_rank` — two-sided Wilcoxon signed-rank p-value (exact for up to
  :data:`WILCOXON_EXACT_MAX` non-zero differences, ties included; normal approximation beyond).
* :func:`paired_permutation_test` — two-sided sign-flip permutation test of the mean difference.
* :func:`straddles` — do a verdict's samples fall on both sides of its threshold?
* :func:`pearson`, :func:`spearman` — correlations (Spearman with tied ranks averaged).
* :func:`confusion_matrix`, :func:`weighted_kappa`, :func:`quadratic_kappa` — agreement of two
  raters over ordered categories (Cohen's kappa).
* :func:`roc_auc` — area under the ROC curve of scores against binary labels (Mann-Whitney U).

What these figures mean for a judge against human labels is :mod:`pytest_llmjudge.analysis.agreement`.

The t quantile is not a table lookup or a truncated series: :func:`t_cdf` evaluates the
regularized incomplete beta function by its continued fraction (Lentz's method, relative
accuracy ~1e-14) and :func:`t_quantile` inverts it with safeguarded Newton steps started from the
Cornish-Fisher expansion, so quantiles agree with high-precision values to about 1e-12 for any
degrees of freedom (df=1 and df=2 use their closed forms). Normal quantiles come from
:class:`statistics.NormalDist` (Wichura's AS241, ~1e-16).

Every random procedure takes a ``seed`` and uses its own :class:`random.Random`, so results are
reproducible and never touch the global random state.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from statistics import NormalDist

__all__ = [
    "WILCOXON_EXACT_MAX",
    "average_ranks",
    "confusion_matrix",
    "mean_interval",
    "normal_quantile",
    "paired_bootstrap_diff",
    "paired_permutation_test",
    "pearson",
    "quadratic_kappa",
    "roc_auc",
    "spearman",
    "straddles",
    "t_cdf",
    "t_quantile",
    "wilcoxon_signed_rank",
    "weighted_kappa",
    "wilson_interval",
]

#: the exact signed-rank distribution is used up to this many non-zero differences
WILCOXON_EXACT_MAX = 50
#: differences are rounded to this many decimals before ranking, so that float noise such as
#: ``0.6 - 0.4 != 0.8 - 0.6`` neither breaks ties nor turns a zero difference into a sign
RANK_DECIMALS = 12

_NORMAL = NormalDist()


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


def normal_quantile(p: float) -> float:
    """Quantile of the standard normal distribution."""
    return _NORMAL.inv_cdf(p)


# --------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def _t_pdf(t: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t: the ``t`` with ``t_cdf(t, df) == p``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be between 0 and 1 (exclusive), got {p!r}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) * math.sqrt(2.0 / (4 * p * (1 - p)))
    if math.isinf(df) or df > 1e7:
        return normal_quantile(p)
    # Cornish-Fisher expansion of t in terms of the normal quantile (Abramowitz & Stegun 26.7.5)
    z = normal_quantile(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    t = z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    # Newton on the exact CDF, kept inside a bracket that always holds the root
    low, high = 0.0, max(2.0 * t, 10.0)
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    if not low < t < high:
        t = (low + high) / 2
    for _ in range(100):
        err = t_cdf(t, df) - p
        if err > 0:
            high = t
        else:
            low = t
        step = err / _t_pdf(t, df)
        nxt = t - step
        if not low < nxt < high:
            nxt = (low + high) / 2
        if abs(nxt - t) <= 1e-13 * max(1.0, abs(t)):
            return nxt
        t = nxt
    return t


# --------------------------------------------------------------------------- intervals


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n``.

    Returns ``(0.0, 1.0)`` when ``n`` is 0 (nothing is known).
    """
    _check_confidence(confidence)
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = normal_quantile(0.5 + confidence / 2)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = centre - half, centre + half
    # exact ends at 0 and n (the formula gives them up to rounding)
    return (0.0 if successes == 0 else max(0.0, low), 1.0 if successes == n else min(1.0, high))


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (type 7, as numpy's default) of sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def _bootstrap_means(values: Sequence[float], n_resamples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    means = [sum(rng.choices(values, k=n)) / n for _ in range(n_resamples)]
    means.sort()
    return means


def _percentile_levels(n: int, confidence: float, expanded: bool) -> tuple[float, float]:
    """Quantile levels of a percentile bootstrap interval.

    The plain percentile interval of a mean covers less than it claims for small n (the
    bootstrap variance is (n-1)/n of the unbiased one and it uses normal, not t, tails). The
    *expanded* percentile interval (Hesterberg, "What Teachers Should Know About the Bootstrap",
    The American Statistician 69(4), 2015) widens the levels to
    ``alpha' = 2 * Phi(-sqrt(n/(n-1)) * t(1-alpha/2, n-1))``, which fixes both.
    """
    alpha = 1 - confidence
    if expanded:
        alpha = 2 * _NORMAL.cdf(-math.sqrt(n / (n - 1)) * t_quantile(1 - alpha / 2, n - 1))
    return alpha / 2, 1 - alpha / 2


def mean_interval(
    values: Iterable[float], confidence: float = 0.95, method: str = "t", seed: int = 0, n_resamples: int = 2000,
    expanded: bool = True,
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its ``confidence`` interval.

    ``method="t"``: mean ± t(n-1) · s/√n (Student t, sample standard deviation).
    ``method="bootstrap"``: percentile bootstrap over ``n_resamples`` resamples, seeded;
    ``expanded`` (default) uses Hesterberg's expanded percentile levels (see
    :func:`_percentile_levels`), ``False`` the plain percentile interval.
    With fewer than two values the interval is undefined: ``low`` and ``high`` are NaN.
    """
    _check_confidence(confidence)
    data = [float(v) for v in values]
    if not data:
        raise ValueError("mean_interval needs at least one value")
    n = len(data)
    mean = math.fsum(data) / n
    if n < 2:
        return (mean, math.nan, math.nan)
    if method == "t":
        var = math.fsum((x - mean) ** 2 for x in data) / (n - 1)
        half = t_quantile(0.5 + confidence / 2, n - 1) * math.sqrt(var / n)
        return (mean, mean - half, mean + half)
    if method == "bootstrap":
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be positive, got {n_resamples}")
        means = _bootstrap_means(data, n_resamples, seed)
        lower, upper = _percentile_levels(n, confidence, expanded)
        return (mean, _quantile(means, lower), _quantile(means, upper))
    raise ValueError(f"unknown method {method!r}: use 't' or 'bootstrap'")


def _paired_diffs(baseline: Sequence[float], current: Sequence[float]) -> list[float]:
    if len(baseline) != len(current):
        raise ValueError(f"paired samples differ in length: {len(baseline)} and {len(current)}")
    return [float(c) - float(b) for b, c in zip(baseline, current)]


def paired_bootstrap_diff(
    baseline: Sequence[float],
    current: Sequence[float],
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    expanded: bool = True,
) -> tuple[float, float, float]:
    """``(mean_diff, low, high)`` of ``current - baseline``, paired by position.

    Paired percentile bootstrap: cases (pairs) are resampled with replacement ``n_resamples``
    times and the interval is read off the quantiles of the resampled mean differences —
    Hesterberg's expanded percentile levels by default (see :func:`_percentile_levels`; about
    ``0.022/0.978`` instead of ``0.025/0.975`` for 60 pairs at 95%), the plain
    ``(1-confidence)/2`` and ``(1+confidence)/2`` levels with ``expanded=False``.
    Fewer than two pairs: the interval is NaN.
    """
    _check_confidence(confidence)
    diffs = _paired_diffs(baseline, current)
    if not diffs:
        raise ValueError("paired_bootstrap_diff needs at least one pair")
    mean = math.fsum(diffs) / len(diffs)
    if len(diffs) < 2:
        return (mean, math.nan, math.nan)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    means = _bootstrap_means(diffs, n_resamples, seed)
    lower, upper = _percentile_levels(len(diffs), confidence, expanded)
    return (mean, _quantile(means, lower), _quantile(means, upper))


# --------------------------------------------------------------------------- paired tests


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of ``values``, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    return ranks


def _signed_ranks(diffs: Iterable[float], zero_method: str) -> tuple[list[float], list[bool]]:
    """Ranks of |d| for the non-zero differences and whether each is positive."""
    rounded = [round(float(d), RANK_DECIMALS) for d in diffs]
    if any(math.isnan(d) for d in rounded):
        raise ValueError("differences must not be NaN")
    if zero_method == "wilcox":
        kept = [d for d in rounded if d != 0]
        ranks = average_ranks([abs(d) for d in kept])
        return ranks, [d > 0 for d in kept]
    if zero_method == "pratt":
        ranks = average_ranks([abs(d) for d in rounded])
        pairs = [(r, d > 0) for r, d in zip(ranks, rounded) if d != 0]
        return [r for r, _ in pairs], [p for _, p in pairs]
    raise ValueError(f"unknown zero_method {zero_method!r}: use 'wilcox' or 'pratt'")


def _exact_signed_rank_p(ranks: Sequence[float], w_plus: float) -> float:
    """Two-sided exact p of W+ under random signs, by counting (ranks may be midranks)."""
    doubled = [round(2 * r) for r in ranks]  # midranks are multiples of 1/2
    total = sum(doubled)
    counts = [0] * (total + 1)
    counts[0] = 1
    reach = 0
    for r in doubled:
        for s in range(reach, -1, -1):
            if counts[s]:
                counts[s + r] += counts[s]
        reach += r
    w = round(2 * w_plus)
    outcomes = 1 << len(doubled)
    lower = sum(counts[: w + 1])
    upper = sum(counts[w:])
    return min(1.0, 2 * min(lower, upper) / outcomes)


def wilcoxon_signed_rank(
    diffs: Iterable[float], zero_method: str = "wilcox", exact: bool | None = None, correction: bool = False
) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that the differences centre on 0.

    ``zero_method="wilcox"`` drops zero differences before ranking (the classic test);
    ``"pratt"`` ranks them with the rest and then drops them. Tied ``|d|`` get midranks.
    ``exact=None`` uses the exact permutation distribution of W+ (conditional on the midranks,
    so it stays exact with ties) when at most :data:`WILCOXON_EXACT_MAX` differences are
    non-zero, otherwise the normal approximation with mean Σr/2 and variance Σr²/4 (which is
    the tie-corrected variance), with a continuity correction when ``correction``.
    No non-zero difference at all gives p = 1.
    """
    ranks, positive = _signed_ranks(diffs, zero_method)
    if not ranks:
        return 1.0
    w_plus = sum(r for r, pos in zip(ranks, positive) if pos)
    use_exact = len(ranks) <= WILCOXON_EXACT_MAX if exact is None else exact
    if use_exact:
        return _exact_signed_rank_p(ranks, w_plus)
    mean = sum(ranks) / 2
    sd = math.sqrt(sum(r * r for r in ranks) / 4)
    if sd == 0:
        return 1.0
    dev = abs(w_plus - mean)
    if correction:
        dev = max(0.0, dev - 0.5)
    return min(1.0, 2 * _NORMAL.cdf(-dev / sd))


def paired_permutation_test(diffs: Iterable[float], n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of the sign-flip permutation test of ``mean(diffs) == 0``.

    Under the null each difference is as likely positive as negative. When all ``2**n`` sign
    patterns fit in ``n_resamples`` they are enumerated (exact p); otherwise ``n_resamples``
    random patterns are drawn (seeded) and p = (1 + hits) / (1 + n_resamples).
    """
    data = [round(float(d), RANK_DECIMALS) for d in diffs]
    nonzero = [abs(d) for d in data if d != 0]
    if not nonzero:
        return 1.0
    observed = abs(sum(data))
    tol = 1e-9 * max(1.0, observed)
    n = len(nonzero)
    patterns = 1 << n
    if patterns <= n_resamples:
        hits = 0
        for pattern in range(patterns):
            total = sum(v if pattern >> i & 1 else -v for i, v in enumerate(nonzero))
            hits += abs(total) >= observed - tol
        return hits / patterns
    rng = random.Random(seed)
    hits = 0
    for _ in range(n_resamples):
        bits = rng.getrandbits(n)
        total = sum(v if bits >> i & 1 else -v for i, v in enumerate(nonzero))
        hits += abs(total) >= observed - tol
    return (1 + hits) / (1 + n_resamples)


def straddles(samples: Iterable[float], threshold: float) -> bool:
    """True when some samples pass (``>= threshold``) and others fail: an unstable verdict."""
    passes = fails = False
    for sample in samples:
        if sample >= threshold:
            passes = True
        else:
            fails = True
        if passes and fails:
            return True
    return False


# --------------------------------------------------------------------------- agreement of two raters
#
# Each returns None where the statistic is undefined (fewer than two points, a constant
# series, a single category used by both raters).


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's correlation coefficient (:func:`statistics.correlation`)."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    if len(x) < 2:
        return None
    try:
        r = statistics.correlation(x, y)
    except statistics.StatisticsError:  # a constant series
        return None
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


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Mann-Whitney U / (n_pos * n_neg): the chance a positive scores above a negative (ties half)."""
    if len(scores) != len(positive):
        raise ValueError("scores and positive must have the same length")
    ranks = average_ranks(scores)
    positives = [r for r, p in zip(ranks, positive) if p]
    n_pos, n_neg = len(positives), len(scores) - len(positives)
    if not n_pos or not n_neg:
        return None
    return (sum(positives) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
