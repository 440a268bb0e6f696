"""Agreement statistics (stats.py) and their reading for a judge (agreement.py), by hand."""

from __future__ import annotations

import math

import pytest

from pytest_llmjudge.analysis import agreement, stats


def test_average_ranks_share_ties():
    assert stats.average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert stats.average_ranks([3, 3, 3]) == [2.0, 2.0, 2.0]
    assert stats.average_ranks([]) == []


def test_spearman_with_ties_by_hand():
    # y ranks: 5->1, 6->2, 7->3.5, 8->5, 7->3.5; dx = -2..2, dy = -2,-1,.5,2,.5
    # r = sum(dx*dy) / sqrt(sum dx^2 * sum dy^2) = 8 / sqrt(10 * 9.5)
    rho = stats.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(95))
    assert rho == pytest.approx(0.820783, abs=1e-6)


def test_spearman_monotone_and_reversed():
    assert stats.spearman([1, 2, 3], [10, 100, 1000]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlations_undefined():
    assert stats.spearman([1], [1]) is None
    assert stats.spearman([1, 2, 3], [4, 4, 4]) is None
    assert stats.pearson([2, 2], [1, 3]) is None
    with pytest.raises(ValueError):
        stats.pearson([1, 2], [1])


def test_pearson_by_hand():
    # x = 1,2,3; y = 2,4,5: dx = -1,0,1; dy = -5/3,1/3,4/3 -> sum dxdy = 3, sxx = 2, syy = 42/9
    assert stats.pearson([1, 2, 3], [2, 4, 5]) == pytest.approx(3 / math.sqrt(2 * 42 / 9))


def test_quadratic_kappa_by_hand():
    # observed: (0,0) (1,2) (2,2) (2,1); marginals 1,1,2 for both; w = (i-j)^2 / 4
    # sum w*O = 1/4 + 1/4 = 0.5; sum w*E = 1.375 (E = outer(marginals)/4) -> 1 - 0.5/1.375
    kappa = stats.quadratic_kappa([0, 1, 2, 2], [0, 2, 2, 1], 3)
    assert kappa == pytest.approx(1 - 0.5 / 1.375)
    assert kappa == pytest.approx(0.636364, abs=1e-6)


def test_kappa_extremes():
    assert stats.quadratic_kappa([0, 1, 2, 3], [0, 1, 2, 3], 4) == pytest.approx(1.0)
    # total disagreement on the two ends of a 3-point scale: 1 - 2/1
    assert stats.quadratic_kappa([0, 2], [2, 0], 3) == pytest.approx(-1.0)
    # one category used by both raters: expected disagreement is 0, kappa undefined
    assert stats.quadratic_kappa([1, 1], [1, 1], 3) is None
    assert stats.quadratic_kappa([], [], 3) is None


def test_linear_and_unweighted_kappa_by_hand():
    a, b = [0, 1, 2, 2], [0, 2, 2, 1]
    # linear: w = |i-j|/2: sum w*O = .5 + .5 = 1; sum w*E = .5*.25*2 + 1*.5*2 + .5*.5*2 = 1.75
    assert stats.weighted_kappa(a, b, 3, weights="linear") == pytest.approx(1 - 1 / 1.75)
    # unweighted: po = 2/4; pe = (1*1 + 1*1 + 2*2)/16 = 6/16 -> (0.5 - 0.375)/(1 - 0.375) = 0.2
    assert stats.weighted_kappa(a, b, 3, weights="none") == pytest.approx(0.2)


def test_confusion_matrix():
    assert stats.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], 3) == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError):
        stats.confusion_matrix([3], [0], 3)


def test_category_rounds_half_up():
    assert [agreement.category(x, 6) for x in (0.0, 0.09, 0.1, 0.5, 0.91, 1.0)] == [0, 0, 1, 3, 5, 5]
    assert [agreement.category(x, 5) for x in (0.125, 0.124, 0.875)] == [1, 0, 4]
    assert agreement.category(-0.5, 5) == 0 and agreement.category(7, 5) == 4


def test_binary_agreement_counts_failures_as_positive():
    human = [True, True, False, False, False]
    judge = [True, False, False, True, False]
    result = agreement.binary_agreement(human, judge)
    assert result["both_pass"] == 1 and result["both_fail"] == 2
    assert result["judge_pass_human_fail"] == 1 and result["judge_fail_human_pass"] == 1
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["fail_precision"] == pytest.approx(2 / 3)
    assert result["fail_recall"] == pytest.approx(2 / 3)
    assert result["fail_f1"] == pytest.approx(2 / 3)
    assert agreement.binary_agreement([], [])["accuracy"] is None


@pytest.mark.parametrize(
    ("kappa", "reading"),
    [(None, "undefined"), (-0.1, "poor (worse than chance)"), (0.2, "slight"), (0.4, "fair"),
     (0.6, "moderate"), (0.61, "substantial"), (0.81, "almost perfect")],
)
def test_interpret_kappa(kappa, reading):
    assert agreement.interpret_kappa(kappa) == reading


def test_roc_auc_by_hand():
    # positives score 0.9 and 0.4, negatives 0.5 and 0.1: 3 of 4 (positive, negative) pairs ordered
    assert stats.roc_auc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    assert stats.roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts half
    assert stats.roc_auc([0.1, 0.2], [True, True]) is None


@pytest.mark.parametrize(("text", "value"), [
    ("pass", True), (" Yes ", True), ("y", True), ("CORRECT", True),
    ("fail", False), ("No", False), ("n", False), ("incorrect", False),
    ("1", None), ("maybe", None), ("", None),
])
def test_pass_fail_words(text, value):
    assert agreement.pass_fail_word(text) is value


def test_label_agrees_on_pass_fail_or_within_the_score_tolerance():
    assert agreement.label_agrees(True, 0.2, label=True, expected_score=None)
    assert not agreement.label_agrees(False, 0.9, label=True, expected_score=None)
    assert agreement.label_agrees(False, 0.5, label=None, expected_score=0.5 + agreement.SCORE_TOLERANCE)
    assert not agreement.label_agrees(True, 0.5, label=None, expected_score=0.75)
    with pytest.raises(ValueError):
        agreement.label_agrees(True, 0.5, label=None, expected_score=None)
