"""Question answering: the app's answers graded for correctness against reference answers."""

import pytest

from app import answer


@pytest.mark.llm_dataset("data/qa.jsonl", id_column="id", required=["input", "expected_output"])
def test_answer_is_correct(case, assert_llm_score):
    """One test per dataset row. Verdicts of many rows are judged concurrently."""
    assert_llm_score(
        answer(case.input), metric="correctness", input=case.input,
        expected=case["expected_output"], threshold=0.6,
    )


def test_verdict_is_returned(assert_llm_score):
    """The Verdict comes back on success; reading it waits for the judge."""
    verdict = assert_llm_score(
        answer("How many legs does a spider have?"), metric="correctness",
        input="How many legs does a spider have?", expected="Spiders have eight legs.",
    )
    assert verdict.reason and 0.0 <= verdict.score <= 1.0


@pytest.mark.llm_dataset("data/qa.jsonl", id_column="id", sample=3, seed=7)
def test_answer_is_relevant(case, assert_llm_score):
    """A reproducible sample of 3 rows, graded for relevancy to the question."""
    assert_llm_score(answer(case.input), metric="answer_relevancy", input=case.input)
