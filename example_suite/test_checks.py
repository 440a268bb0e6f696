"""Deterministic checks report through the same Verdict, summary and JUnit path."""

from app import answer, order_summary_json

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "status"],
    "properties": {"order_id": {"type": "string"}, "status": {"enum": ["pending", "shipped"]}},
}


def test_order_summary_is_valid_json(assert_llm_score):
    assert_llm_score(order_summary_json("A-17"), metric="json_schema", expected=ORDER_SCHEMA)


def test_capital_mentions_paris(assert_llm_score):
    assert_llm_score(answer("What is the capital of France?"), metric="contains", expected="Paris")


def test_spider_answer_has_a_number_word(assert_llm_score):
    assert_llm_score(answer("How many legs does a spider have?"), metric="regex", expected=r"\beight\b")


def test_exact_answer(assert_llm_score):
    assert_llm_score("Carbon dioxide", metric="exact", expected="Carbon dioxide")


def test_boiling_answer_is_similar_to_reference(assert_llm_score):
    question = "At what temperature does water boil at sea level?"
    assert_llm_score(
        answer(question), metric="similarity",
        expected="Water boils at 100 degrees Celsius at sea level.", threshold=0.7,
    )
