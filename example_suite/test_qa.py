"""Question answering: the app's answers graded for correctness against reference answers."""

import pytest

from app import answer


@pytest.mark.llm_dataset("data/qa.jsonl", id_column="id", required=["input", "expected_output"])
def test_answer_is_correct(case, assert_llm_score):
    """One test per dataset row; the verdict is returned when the score passes."""
    verdict = assert_llm_score(
        answer(case.input), metric="correctness", input=case.input,
        expected=case["expected_output"], threshold=0.6,
    )
    assert verdict.reason


@pytest.mark.llm_dataset("data/qa.jsonl", id_column="id", sample=3, seed=7)
def test_answer_is_relevant(case, assert_llm_score):
    """A reproducible sample of 3 rows, graded for relevancy to the question."""
    assert_llm_score(answer(case.input), metric="answer_relevancy", input=case.input)
