"""Issue 14: the compact form of a metric for local judges, clipped inputs, reasons cut at a loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from pytest_llmjudge.judges import FakeJudge
from pytest_llmjudge.judging.evaluation import evaluate
from pytest_llmjudge.metrics import Metric, MetricInputs, unfence
from pytest_llmjudge.metrics.base import cut_repetition
from pytest_llmjudge.metrics.builtin import CORRECTNESS


class Reasoned(BaseModel):
    reason: str
    score: Literal[0, 1, 2]


class Bare(BaseModel):
    score: Literal[0, 1]


COMPACT = Metric(name="m", prompt="A: {output}", schema=Bare, score=lambda v: v.score, score_field="score")
FULL = Metric(name="m", prompt="Grade: {output}", schema=Reasoned, score=lambda v: v.score, scale=(0, 2),
              compact=COMPACT)


def test_local_judges_get_the_compact_form_others_the_full_one() -> None:
    seen = []

    def handler(request):
        seen.append(request.schema)
        return {"score": 1} if request.schema is Bare else {"reason": "fine", "score": 2}

    inputs = MetricInputs(output="Paris")
    local = evaluate(FULL, inputs, FakeJudge(handler, name="local:smollm2-135m"), threshold=0.5)
    remote = evaluate(FULL, inputs, FakeJudge(handler, name="openai:gpt-4o-mini"), threshold=0.5)
    assert seen == [Bare, Reasoned]
    assert local.metric == remote.metric == "m" and local.score == remote.score == 1.0
    assert FULL.for_judge("local:x") is COMPACT and FULL.for_judge("hf:x") is FULL
    assert COMPACT.for_judge("local:x") is COMPACT


def test_builtin_correctness_has_a_compact_form_with_the_same_name() -> None:
    compact = CORRECTNESS.for_judge("local:smollm2-135m")
    assert compact is not CORRECTNESS and compact.name == CORRECTNESS.name
    assert compact.fingerprint() != CORRECTNESS.fingerprint()


def test_max_chars_clips_each_text_before_fencing() -> None:
    metric = Metric(name="c", prompt="{output} {expected}", schema=Bare, score=lambda v: v.score, max_chars=10)
    _, user = metric.messages(MetricInputs(output="x" * 50, expected="short"))
    texts = unfence(user["content"])
    assert texts == {"output": "x" * 9 + "…", "expected": "short"}


def test_a_looping_reason_is_cut_where_it_starts_repeating() -> None:
    loop = "A spider has eight legs, not 10, but 10, which is the answer. A spider has eight legs, not 10"
    assert cut_repetition(loop) == "A spider has eight legs, not 10, but 10, which is the answer…"
    plain = "The answer names Paris, which the reference also names."
    assert cut_repetition(plain) == plain


def test_only_local_judges_reasons_are_cut() -> None:
    loop = "it is right it is right it is right"
    judge = lambda name: FakeJudge(lambda r: {"reason": loop, "score": 2}, name=name)  # noqa: E731
    full_only = Metric(name="f", prompt="{output}", schema=Reasoned, score=lambda v: v.score, scale=(0, 2))
    assert evaluate(full_only, MetricInputs(output="a"), judge("local:m"), threshold=0.5).reason == "it is right…"
    assert evaluate(full_only, MetricInputs(output="a"), judge("openai:m"), threshold=0.5).reason == loop
