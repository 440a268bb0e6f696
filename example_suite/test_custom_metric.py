"""Your own metric: a prompt template + a pydantic verdict schema + a scoring rule."""

from typing import Literal

from pydantic import BaseModel

from app import answer
from pytest_llmjudge import Metric
from pytest_llmjudge.metrics import bounded_str


class ConcisenessVerdict(BaseModel):
    # bounded: a small constrained judge cannot ramble inside the string until its token limit
    reason: bounded_str(200)
    score: Literal[1, 2, 3]  # a Literal, not an int with min/max: decoders enforce enums


CONCISENESS = Metric(
    name="conciseness",
    prompt=(
        "Rate how concise the ANSWER is for the QUESTION: 1 = rambling, 2 = some filler, "
        "3 = says only what is needed.\n\nQUESTION:\n{input}\n\nANSWER:\n{output}\n\n"
        'Give a short "reason", then the integer "score".'
    ),
    schema=ConcisenessVerdict,
    score=lambda verdict: verdict.score,
    scale=(1, 3),  # normalized to 0-1 in the Verdict
    score_field="score",  # probability-weighted when the judge reports token probabilities
    version="1",  # bump (or edit the prompt) and cached verdicts of this metric are not reused
)


def test_answer_is_concise(assert_llm_score):
    question = "How many legs does a spider have?"
    verdict = assert_llm_score(answer(question), metric=CONCISENESS, input=question)
    assert 0.0 <= verdict.score <= 1.0
