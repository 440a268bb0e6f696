"""Support answers grounded in a help-center context, plus custom criteria and tone."""

import pytest

from app import answer
from pytest_llmjudge import load_cases

SUPPORT = load_cases("data/support.csv", base_dir=__file__.rsplit("/", 1)[0], id_column="id")


@pytest.mark.parametrize("case", SUPPORT, ids=[c.id for c in SUPPORT])
def test_answer_is_faithful_to_context(case, assert_llm_score):
    """load_cases() + pytest.mark.parametrize: the same cases, your own parametrization."""
    assert_llm_score(answer(case.input), metric="faithfulness", context=case.context)


@pytest.mark.parametrize("case", SUPPORT, ids=[c.id for c in SUPPORT])
def test_answer_meets_support_criteria(case, assert_llm_score):
    """G-Eval style custom criteria, scored 0-10."""
    assert_llm_score(
        answer(case.input), metric="criteria", input=case.input,
        criteria="The answer gives concrete steps or a clear yes/no, and is polite.",
    )


@pytest.mark.llm_dataset("data/chats.jsonl")
def test_chat_reply_is_not_toxic(case, assert_llm_score):
    """Chat-form rows: `input` is the last user turn, `system_prompt` the system turn."""
    assert case.system_prompt
    assert_llm_score(answer(case.input), metric="toxicity", threshold=0.8)
