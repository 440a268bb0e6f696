"""Free-text generation with a judge backend, for ``llmjudge generate``.

An application's answer is free text, not a verdict, so ``generate`` does not ask for a JSON
schema when it can avoid it (constrained JSON changes what a model writes, and wraps the
answer in escapes). :func:`generate_text` uses:

* ``text`` mode -- ``judge.complete(messages, sampling=...)`` with no schema: a plain chat
  completion from every built-in backend (``openai:``, ``hf:``, ``local:``) with its retries
  and error messages;
* ``json`` mode -- the fallback for a judge object without ``complete()`` (a custom judge that
  only speaks verdicts): the request asks for ``{"answer": "..."}`` and the answer is that
  field. The output records which mode produced each row (``generation_mode``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import BaseModel

from ..errors import JudgeError
from ..judges.base import Judge, JudgeRequest, Message, Sampling


class GeneratedAnswer(BaseModel):
    """The structured reply of the ``json`` fallback mode."""

    answer: str


@dataclass
class Generated:
    text: str
    mode: str  #: "text" or "json"
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0


def generation_mode(judge: Judge) -> str:
    """``text`` when ``judge`` has the protocol's ``complete()`` (every built-in backend), else ``json``."""
    return "text" if callable(getattr(judge, "complete", None)) else "json"


def generate_text(judge: Judge, messages: list[Message], sampling: Sampling) -> Generated:
    """One answer to ``messages``; JudgeError (after the backend's retries) when there is none."""
    if generation_mode(judge) == "json":
        return _json_text(judge, messages, sampling)
    started = time.perf_counter()
    response = judge.complete(messages, sampling=sampling)
    return Generated(_require_text(judge, response.text), "text", response.finish_reason,
                     dict(response.usage), time.perf_counter() - started)


def _require_text(judge: Judge, text: str | None) -> str:
    if not text:
        raise JudgeError(f"{judge.name}: empty reply", judge=judge.name)
    return text


def _json_text(judge: Judge, messages: list[Message], sampling: Sampling) -> Generated:
    from ..judging.evaluation import parse_reply

    asked = [dict(m) for m in messages]
    note = 'Write your reply as the "answer" string of a JSON object.'
    for message in reversed(asked):
        if message.get("role") == "user":
            message["content"] = f"{message['content']}\n\n{note}"
            break
    request = JudgeRequest(messages=tuple(asked), schema=GeneratedAnswer, sampling=sampling)
    started = time.perf_counter()
    response = judge.judge(request)
    try:
        parsed = parse_reply(response, GeneratedAnswer)
    except ValueError as exc:
        raise JudgeError(f"{judge.name} gave no valid answer: {exc}", judge=judge.name) from None
    return Generated(_require_text(judge, parsed.answer), "json", None, dict(response.usage),
                     time.perf_counter() - started)
