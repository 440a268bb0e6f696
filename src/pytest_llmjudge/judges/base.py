"""The judge protocol every backend implements, and the request/response it speaks."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

Message = dict[str, str]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one judge call. ``temperature=0`` means greedy."""

    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class FreeText(BaseModel):
    """The schema a request carries when :meth:`Judge.complete` asked for free text."""

    text: str


@dataclass(frozen=True)
class JudgeRequest:
    """Chat messages plus the pydantic schema the reply must validate against."""

    messages: tuple[Message, ...]
    schema: type[BaseModel]
    sampling: Sampling = Sampling()
    #: index of this sample when a verdict is sampled several times (part of the cache key)
    sample_index: int = 0
    #: name of the integer score field whose token probabilities the backend should report
    score_field: str | None = None
    #: the values that score field may take
    score_values: tuple[int, ...] = ()

    def schema_json(self) -> dict[str, Any]:
        return schema_of(self.schema)


@dataclass
class JudgeResponse:
    """What a backend returns: the raw reply text plus what it reported about the call."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0
    #: probability of each allowed score value at the score token, when the backend knows it
    score_distribution: dict[int, float] | None = None
    #: the validated instance, when the backend already parsed it (constrained decoding)
    parsed: BaseModel | None = None
    #: why generation stopped ("stop", "length"), when the backend says
    finish_reason: str | None = None


#: the default sampling of a call (greedy)
DEFAULT_SAMPLING = Sampling()


@runtime_checkable
class Judge(Protocol):
    """A backend that turns a JudgeRequest into a JudgeResponse.

    ``name`` is ``backend:model``; ``endpoint`` is the host it talks to (part of the cache key,
    never a credential). Backends raise :class:`~pytest_llmjudge.errors.JudgeError` when they
    cannot answer after their retries.

    :meth:`complete` is the general call that generation and augmentation use: a free-text
    reply when ``schema`` is None, else a reply that validates against ``schema`` (with the
    backend's structured-output fallbacks). :meth:`judge` is a verdict request (it may also
    report the score token's probabilities).
    """

    name: str
    endpoint: str

    def judge(self, request: JudgeRequest) -> JudgeResponse: ...

    def complete(
        self,
        messages: Sequence[Message],
        *,
        sampling: Sampling = DEFAULT_SAMPLING,
        schema: type[BaseModel] | None = None,
    ) -> JudgeResponse: ...


@functools.lru_cache(maxsize=256)
def schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a verdict model, computed once per model (treat it as read-only)."""
    return schema.model_json_schema()


def schema_instructions(schema: type[BaseModel]) -> str:
    """The prompt suffix used when a backend cannot constrain its output to a schema."""
    return (
        "Reply with a single JSON object and nothing else. It must validate against this "
        "JSON schema:\n" + json.dumps(schema_of(schema), separators=(",", ":"))
    )


def with_schema_in_prompt(messages: tuple[Message, ...], schema: type[BaseModel]) -> list[Message]:
    """Append the schema instructions to the last user message."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            message["content"] = message["content"] + "\n\n" + schema_instructions(schema)
            break
    else:
        out.append({"role": "user", "content": schema_instructions(schema)})
    return out
