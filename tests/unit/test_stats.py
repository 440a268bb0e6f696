"""Unit tests of pytest_llmjudge.analysis.stats against textbook values and brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from pytest_llmjudge.analysis.stats import (
    mean_interval,
    normal_quantile,
    paired_bootstrap_diff,
    paired_permutation_test,
    straddles,
    t_cdf,
    t_quantile,
    wilcoxon_signed_rank,
    wilson_interval,
)

# Student t quantiles t(p, df), computed to 17 digits with mpmath (regularized incomplete beta);
# the 0.975 column is the familiar two-sided 95% table: 12.706, 4.303, 3.182, 2.776, 2.571, ...
T_TABLE = [
    (0.975, 1, 12.706204736174693),
    (0.975, 2, 4.3026527297494618),
    (0.975, 3, 3.1824463052837084),
    (0.975, 4, 2.7764451051977935),
    (0.975, 5, 2.5705818356363148),
    (0.975, 9, 2.262157162798205),
    (0.975, 10, 2.2281388519862742),
    (0.975, 29, 2.0452296421327039),
    (0.975, 30, 2.0422724563012379),
    (0.975, 59, 2.0009953780882673),
    (0.975, 100, 1.9839715185235519),
    (0.975, 1000, 1.9623390808264081),
    (0.995, 4, 4.604094871349992),
    (0.95, 12, 1.7822875556493196),
    (0.9, 7, 1.4149239276505086),
    (0.9, 3.5, 1.5765766051364053),
]


@pytest.mark.parametrize("p, df, expected", T_TABLE)
def test_t_quantile_matches_tables(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-11)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-11)
    assert t_cdf(expected, df) == pytest.approx(p, abs=1e-12)


def test_t_quantile_edges() -> None:
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.975, 1e9) == pytest.approx(normal_quantile(0.975))
    with pytest.raises(ValueError):
        t_quantile(1.0, 5)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)


def test_t_cdf_closed_form_df1() -> None:
    for t in (-3.0, -0.5, 0.0, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)


def test_wilson_interval_textbook() -> None:
    # Newcombe (1998), Table I: 81/263 -> 0.2553..0.3662; 15/148 -> 0.0624..0.1605
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=5e-5)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(50, 100, 0.9), wilson_interval(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)


def test_mean_interval_t_by_hand() -> None:
    values = [0.2, 0.4, 0.6, 0.8, 1.0]
    # mean 0.6, sd = sqrt(0.1) = 0.316228, se = 0.141421, t(0.975, 4) = 2.776445
    mean, low, high = mean_interval(values)
    assert mean == pytest.approx(0.6)
    assert low == pytest.approx(0.6 - 2.7764451052 * 0.1414213562, abs=1e-9)
    assert high == pytest.approx(0.6 + 2.7764451052 * 0.1414213562, abs=1e-9)
    assert mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    single = mean_interval([0.7])
    assert single[0] == 0.7 and math.isnan(single[1]) and math.isnan(single[2])
    with pytest.raises(ValueError):
        mean_interval([])
    with pytest.raises(ValueError):
        mean_interval([0.1, 0.2], method="magic")


def test_mean_interval_bootstrap_is_seeded_and_close_to_t() -> None:
    rng = random.Random(7)
    values = [rng.gauss(0.6, 0.15) for _ in range(200)]
    boot = mean_interval(values, method="bootstrap", seed=3)
    assert boot == mean_interval(values, method="bootstrap", seed=3)
    assert boot != mean_interval(values, method="bootstrap", seed=4)
    t = mean_interval(values, method="t")
    assert boot[0] == t[0]
    assert boot[1] == pytest.approx(t[1], abs=0.006)
    assert boot[2] == pytest.approx(t[2], abs=0.006)
    assert boot[1] < boot[0] < boot[2]


def test_paired_bootstrap_diff() -> None:
    baseline = [0.8, 0.6, 0.4, 1.0, 0.2, 0.6]
    assert paired_bootstrap_diff(baseline, baseline) == (0.0, 0.0, 0.0)
    shifted = [b - 0.2 for b in baseline]
    mean, low, high = paired_bootstrap_diff(baseline, shifted)
    assert (mean, low, high) == pytest.approx((-0.2, -0.2, -0.2))
    rng = random.Random(1)
    base = [rng.random() for _ in range(100)]
    cur = [b - 0.05 + rng.gauss(0, 0.1) for b in base]
    result = paired_bootstrap_diff(base, cur, seed=5)
    assert result == paired_bootstrap_diff(base, cur, seed=5)
    mean, low, high = result
    assert low < mean < high
    # the bootstrap interval of the mean difference is close to the t interval of the diffs
    t_mean, t_low, t_high = mean_interval([c - b for b, c in zip(base, cur)])
    assert mean == pytest.approx(t_mean)
    assert low == pytest.approx(t_low, abs=0.005) and high == pytest.approx(t_high, abs=0.005)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([0.1], [0.1, 0.2])
    one = paired_bootstrap_diff([0.1], [0.3])
    assert one[0] == pytest.approx(0.2) and math.isnan(one[1])


def _brute_force_signed_rank_p(diffs: list[float], zero_method: str = "wilcox") -> float:
    """Enumerate all sign patterns: the definition of the exact two-sided p."""
    values = diffs if zero_method == "pratt" else [d for d in diffs if d != 0]
    absolute = sorted(abs(d) for d in values)
    ranks = {}
    for value in set(absolute):
        positions = [i + 1 for i, a in enumerate(absolute) if a == value]
        ranks[value] = sum(positions) / len(positions)
    scored = [(ranks[abs(d)], d > 0) for d in values if d != 0]
    observed = sum(r for r, pos in scored if pos)
    stats = [sum(r for (r, _), s in zip(scored, signs) if s) for signs in itertools.product([0, 1], repeat=len(scored))]
    lower = sum(s <= observed + 1e-9 for s in stats) / len(stats)
    upper = sum(s >= observed - 1e-9 for s in stats) / len(stats)
    return min(1.0, 2 * min(lower, upper))


def test_wilcoxon_textbook_values() -> None:
    # all five differences positive: W- = 0, P = 2 / 2**5
    assert wilcoxon_signed_rank([1, 2, 3, 4, 5]) == pytest.approx(0.0625)
    assert wilcoxon_signed_rank([-1, -2, -3, -4, -5]) == pytest.approx(0.0625)
    # Darwin's Zea mays data (Fisher 1935), the scipy.stats.wilcoxon example: W = 24, p = 0.041259765625
    darwin = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    assert wilcoxon_signed_rank(darwin) == pytest.approx(0.041259765625, abs=1e-15)
    # normal approximation by hand: n=15, W+ = 96, mean 60, var 15*16*31/24 = 310
    expected = 2 * (1 - 0.5 * (1 + math.erf(36 / math.sqrt(310) / math.sqrt(2))))
    assert wilcoxon_signed_rank(darwin, exact=False) == pytest.approx(expected, rel=1e-12)
    corrected = 2 * (1 - 0.5 * (1 + math.erf(35.5 / math.sqrt(310) / math.sqrt(2))))
    assert wilcoxon_signed_rank(darwin, exact=False, correction=True) == pytest.approx(corrected, rel=1e-12)


@pytest.mark.parametrize("diffs", [
    [0.2, -0.2, 0.2, 0.4, 0.0, 0.2, -0.4, 0.2, 0.2, 0.0, 0.6],  # ties and zeros, as judge scores give
    [0.1, 0.1, 0.1, -0.1, 0.3, 0.3, 0.2, -0.2],
    [-0.2, -0.2, -0.4, -0.2, 0.2, -0.6, -0.2, -0.4, 0.0, -0.2, -0.2, -0.4],
])
def test_wilcoxon_exact_matches_brute_force_with_ties_and_zeros(diffs: list[float]) -> None:
    for zero_method in ("wilcox", "pratt"):
        assert wilcoxon_signed_rank(diffs, zero_method=zero_method) == pytest.approx(
            _brute_force_signed_rank_p(diffs, zero_method), abs=1e-12)


def test_wilcoxon_float_noise_and_degenerate_inputs() -> None:
    # 0.6-0.4 and 0.8-0.6 differ in the last bit; they are the same difference
    a = wilcoxon_signed_rank([0.6 - 0.4, 0.8 - 0.6, 1.0 - 0.8, 0.3 - 0.3])
    assert a == pytest.approx(wilcoxon_signed_rank([0.2, 0.2, 0.2]))
    assert wilcoxon_signed_rank([]) == 1.0
    assert wilcoxon_signed_rank([0.0, 0.0]) == 1.0
    assert wilcoxon_signed_rank([0.3]) == 1.0
    with pytest.raises(ValueError):
        wilcoxon_signed_rank([0.1], zero_method="zsplit")


def test_wilcoxon_large_n_uses_normal_approximation_close_to_exact() -> None:
    rng = random.Random(11)
    diffs = [rng.choice([-0.4, -0.2, 0.0, 0.2, 0.2, 0.4]) for _ in range(48)]
    exact = wilcoxon_signed_rank(diffs, exact=True)
    approx = wilcoxon_signed_rank(diffs, exact=False)
    assert approx == pytest.approx(exact, abs=0.02)
    many = [rng.gauss(-0.05, 0.2) for _ in range(500)]
    assert wilcoxon_signed_rank(many) < 0.01  # n > 50: normal approximation, fast


def test_paired_permutation_test() -> None:
    # five positive differences: only the all-positive and all-negative patterns are as extreme
    assert paired_permutation_test([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert paired_permutation_test([0, 0]) == 1.0
    # exact enumeration by hand: |sum| >= 3 for [1, 2, -0.5]: patterns (+,+,+)=3.5, (+,+,-)=2.5...
    p = paired_permutation_test([1.0, 2.0, -0.5])
    sums = [abs(a * 1 + b * 2 + c * 0.5) for a in (1, -1) for b in (1, -1) for c in (1, -1)]
    assert p == pytest.approx(sum(s >= 2.5 for s in sums) / 8)
    rng = random.Random(3)
    diffs = [rng.gauss(0.1, 0.2) for _ in range(40)]
    mc = paired_permutation_test(diffs, n_resamples=5000, seed=1)
    assert mc == paired_permutation_test(diffs, n_resamples=5000, seed=1)
    # Monte Carlo p of the sign-flip test is close to the paired t-test's p on the same data
    mean, low, _ = mean_interval(diffs)
    t_stat = mean / ((mean - low) / t_quantile(0.975, len(diffs) - 1))
    assert mc == pytest.approx(2 * t_cdf(-abs(t_stat), len(diffs) - 1), abs=0.01)
    assert paired_permutation_test([d + 0.1 for d in diffs], n_resamples=5000, seed=1) < 0.001


def test_straddles() -> None:
    assert straddles([0.4, 0.6], 0.5)
    assert straddles([0.5, 0.49], 0.5)
    assert not straddles([0.5, 0.5, 0.9], 0.5)  # exactly at the threshold passes
    assert not straddles([0.1, 0.2], 0.5)
    assert not straddles([], 0.5)
    assert not straddles([0.7], 0.5)
