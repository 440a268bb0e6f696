"""Verdict decision fields: set where the decision is made, rendered in one place."""

from __future__ import annotations

from pytest_llmjudge.errors import score_failure_message
from pytest_llmjudge.judging.repeats import RepeatPlan, combine
from pytest_llmjudge.judging.verdict import Verdict


def _samples(*scores: float) -> list[Verdict]:
    return [Verdict(metric="m", score=s, reason=f"r{s}", judge="fake") for s in scores]


def test_single_verdict_decision() -> None:
    verdict = Verdict(metric="m", score=0.4)
    assert (verdict.decision_kind, verdict.adaptive, verdict.decision) == ("single", False, "single verdict")


def test_mean_decision_fields_and_sentence() -> None:
    verdict = combine(_samples(0.2, 0.8, 0.9), RepeatPlan(samples=3), threshold=0.5)
    assert verdict.decision_kind == "mean" and verdict.passes == 2 and verdict.min_passes is None
    assert verdict.decision == "mean of 3 samples"


def test_k_of_n_adaptive_decision_fields_and_sentence() -> None:
    plan = RepeatPlan(adaptive=True, max_samples=5, min_passes=2)
    verdict = combine(_samples(0.9, 0.1, 0.2), plan, threshold=0.5)
    assert (verdict.decision_kind, verdict.passes, verdict.min_passes) == ("k_of_n", 1, 2)
    assert verdict.adaptive and verdict.sample_budget == 5 and not verdict.passed
    assert verdict.decision == "1 of 3 samples passed (need 2), adaptive (at most 5)"
    message = score_failure_message(verdict)
    assert message.startswith("m: 1 of 3 samples passed (need 2), adaptive (at most 5) at threshold 0.500")


def test_decision_is_dumped_and_a_dump_validates_again() -> None:
    verdict = combine(_samples(0.9, 0.8), RepeatPlan(samples=2, min_passes=2), threshold=0.5)
    data = verdict.model_dump(mode="json")
    assert data["decision"] == "2 of 2 samples passed (need 2)" and data["decision_kind"] == "k_of_n"
    again = Verdict.model_validate(data)  # the cache stores such dumps; ``decision`` is rendered again
    assert again == verdict and again.decision == data["decision"]
