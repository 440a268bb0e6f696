"""A metric: what is judged. A prompt template + a pydantic verdict schema + a scoring rule."""

from __future__ import annotations

import functools
import hashlib
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from ..errors import ConfigError
from ..judges.base import Message
from .fencing import FENCE_NOTICE, fenced_values

if TYPE_CHECKING:
    from .likelihood import ReferenceGain

DEFAULT_SYSTEM = (
    "You are a strict, fair evaluator of answers produced by an AI application. "
    "Follow the rubric exactly and answer only in the requested JSON format."
)

INPUT_NAMES = ("output", "input", "expected", "context", "criteria")


@dataclass(frozen=True)
class MaxChars:
    """``Annotated[str, MaxChars(n)]``: the schema advertises ``maxLength``; a longer value is truncated.

    Constrained decoders honour the bound (a small model cannot loop inside a string until
    the token limit); a remote judge that writes a longer string is truncated, not rejected.
    """

    limit: int
    keyword: ClassVar[str] = "maxLength"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        limit = self.limit
        return core_schema.no_info_after_validator_function(lambda value: value[:limit], handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema[self.keyword] = self.limit
        return json_schema


@dataclass(frozen=True)
class MaxItems(MaxChars):
    """``Annotated[list[X], MaxItems(n)]``: the schema advertises ``maxItems``; extra items are dropped."""

    keyword: ClassVar[str] = "maxItems"


def bounded_str(max_chars: int) -> Any:
    """``Annotated[str, MaxChars(max_chars)]``, for schemas built at run time."""
    return Annotated[str, MaxChars(max_chars)]


def bounded_list(item: Any, max_items: int) -> Any:
    """``Annotated[list[item], MaxItems(max_items)]``, for schemas built at run time."""
    return Annotated[list[item], MaxItems(max_items)]


#: a reason is cut where a run of this many words repeats (a small model's loop)
REPEATED_WORDS = 3


def cut_repetition(reason: str) -> str:
    """``reason`` up to the first run of :data:`REPEATED_WORDS` words it already said, then "…"."""
    words = reason.split()
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - REPEATED_WORDS + 1):
        gram = tuple(w.lower().strip(",.;:!?") for w in words[i:i + REPEATED_WORDS])
        if gram in seen:
            return " ".join(words[:i]).rstrip(",;:.") + "…"
        seen.add(gram)
    return reason


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric may look at for one answer."""

    output: str
    input: str | None = None
    expected: str | None = None
    context: str | None = None
    criteria: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) or "" for name in INPUT_NAMES}


def _check_required(metric: str, requires: tuple[str, ...], inputs: MetricInputs) -> None:
    missing = [name for name in requires if not getattr(inputs, name)]
    if missing:
        raise ConfigError(
            f"metric {metric!r} needs {', '.join(f'{m}=' for m in missing)} "
            "in assert_llm_score(...)"
        )


@dataclass(frozen=True)
class Metric:
    """A judged metric.

    ``prompt`` is a ``str.format`` template over ``{output}``, ``{input}``, ``{expected}``,
    ``{context}`` and ``{criteria}``; each is filled with its text inside a fenced block the
    text cannot close, and the system message tells the judge the blocks are data. ``score`` maps
    the validated verdict instance to a raw score on ``scale``; the Verdict's score is that raw
    score normalized to [0, 1].
    ``score_field`` names an integer (``Literal``) field whose token probabilities, when the
    backend reports them, give a probability-weighted score. Change ``version`` (or the prompt
    or schema) and cached verdicts of this metric are no longer used.

    Example::

        class Politeness(BaseModel):
            reason: str
            score: Literal[1, 2, 3]

        politeness = Metric(
            name="politeness",
            prompt="Rate how polite this reply is, 1 (rude) to 3 (polite).\\nReply: {output}",
            schema=Politeness,
            score=lambda v: v.score,
            scale=(1, 3),
        )
    """

    name: str
    prompt: str
    schema: type[BaseModel]
    score: Callable[[Any], float]
    scale: tuple[float, float] = (0.0, 1.0)
    requires: tuple[str, ...] = ()
    system: str = DEFAULT_SYSTEM
    score_field: str | None = None
    reason: Callable[[Any], str] | None = None
    details: Callable[[Any], dict[str, Any]] | None = None
    version: str = "1"
    #: the form sent to the embedded (small, local) judges, when it differs: see :meth:`for_judge`
    compact: Metric | None = None
    #: scored from a local model's likelihoods instead of a reply, when the judge can (see :mod:`.likelihood`)
    likelihood: ReferenceGain | None = None
    #: cut each placeholder's text to this many characters (ending in "…") before it is sent
    max_chars: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("Metric needs a name")
        if not (isinstance(self.schema, type) and issubclass(self.schema, BaseModel)):
            raise ConfigError(f"Metric {self.name!r}: schema must be a pydantic BaseModel class")
        low, high = self.scale
        if not high > low:
            raise ConfigError(f"Metric {self.name!r}: scale {self.scale} must be (low, high), low < high")
        try:
            self.prompt.format(**{name: "" for name in INPUT_NAMES})
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"Metric {self.name!r}: the prompt template uses an unknown field {exc}; "
                f"use {', '.join('{' + n + '}' for n in INPUT_NAMES)} and write literal braces as {{{{ }}}}"
            ) from None

    @property
    def needs_judge(self) -> bool:
        return True

    def for_judge(self, judge_name: str) -> Metric:
        """The form of this metric for a judge: ``compact`` for ``local:`` judges, else itself.

        A small CPU model's rubric reply rambles; a short yes/no question scored by the
        probability of "yes" is faster and no worse. A metric with a ``likelihood`` form (the
        built-in correctness) is scored from the local model's likelihoods instead when the judge
        exposes its model (:func:`pytest_llmjudge.judging.evaluation.evaluate`), which measured
        better than either (bench/judge_agreement.py, README "How good is the judge?").
        """
        if self.compact is not None and judge_name.startswith("local:"):
            return self.compact
        return self

    def check_inputs(self, inputs: MetricInputs) -> None:
        _check_required(self.name, self.requires, inputs)

    def messages(self, inputs: MetricInputs) -> tuple[Message, ...]:
        """System and user message; each placeholder's text is fenced (see :mod:`.fencing`)."""
        texts = inputs.as_dict()
        if self.max_chars is not None:
            texts = {name: text if len(text) <= self.max_chars else text[: self.max_chars - 1] + "…"
                     for name, text in texts.items()}
        user = self.prompt.format(**fenced_values(texts))
        return ({"role": "system", "content": f"{self.system}\n{FENCE_NOTICE}"},
                {"role": "user", "content": user})

    def normalize(self, raw: float) -> float:
        low, high = self.scale
        return min(1.0, max(0.0, (raw - low) / (high - low)))

    def score_values(self) -> tuple[int, ...]:
        """The allowed values of ``score_field``, read from its ``Literal`` annotation."""
        if not self.score_field:
            return ()
        annotation = self.schema.model_fields[self.score_field].annotation
        if typing.get_origin(annotation) is Literal:
            return tuple(int(v) for v in typing.get_args(annotation))
        return ()

    def reason_of(self, parsed: BaseModel) -> str:
        if self.reason is not None:
            return self.reason(parsed)
        return str(getattr(parsed, "reason", "") or "")

    def fingerprint(self) -> str:
        """A hash of everything about the metric that changes its verdicts."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        # computed once per (frozen) metric; cached_property writes the instance's __dict__
        blob = json.dumps(
            [self.name, self.version, self.prompt, self.system, self.scale,
             self.schema.model_json_schema(), self.max_chars],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckMetric:
    """A deterministic metric computed without a judge (exact match, regex, embeddings...).

    ``check`` returns ``(score in [0, 1], reason)``.
    """

    name: str
    check: Callable[[MetricInputs], tuple[float, str]]
    requires: tuple[str, ...] = ()
    version: str = "1"
    judge_name: str = "check"

    @property
    def needs_judge(self) -> bool:
        return False

    def check_inputs(self, inputs: MetricInputs) -> None:
        _check_required(self.name, self.requires, inputs)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.name}:{self.version}".encode()).hexdigest()[:16]


AnyMetric = Metric | CheckMetric
