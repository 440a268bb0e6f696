"""Free-text generation with a judge backend, for ``llmjudge generate``.

An application's answer is free text, not a verdict, so ``generate`` does not ask for a JSON
schema when it can avoid it (constrained JSON changes what a model writes, and wraps the
answer in escapes). :func:`generate_text` picks, per backend:

* ``text`` mode -- a plain chat completion, no ``response_format``:
  ``openai:`` through the judge's own OpenAI SDK client, ``hf:`` through its
  ``InferenceClient``, with the backend's retries (429/5xx/timeouts, shared backoff) and
  error messages; ``local:`` with the engine's unconstrained decoding, concurrent requests
  batched; any judge object with a ``generate_text(messages, sampling)`` method uses it.
* ``json`` mode -- the fallback for any other :class:`~pytest_llmjudge.judges.Judge` (which
  only speaks structured replies): the request asks for ``{"answer": "..."}`` and the answer
  is that field. The output records which mode produced each row (``generation_mode``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..errors import JudgeError
from ..judges.base import Judge, JudgeRequest, JudgeResponse, Message, Sampling

#: max_tokens sent to backends that require one when the user gave none
DEFAULT_MAX_TOKENS = 1024


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
    """``text`` when :func:`generate_text` can get a plain completion from ``judge``, else ``json``."""
    if callable(getattr(judge, "generate_text", None)):
        return "text"
    kind = type(judge).__name__
    if kind in ("OpenAIJudge", "HFInferenceJudge"):
        return "text"
    if kind == "LocalJudge" and callable(getattr(getattr(judge, "engine", None), "generate", None)):
        return "text"
    return "json"


def generate_text(judge: Judge, messages: list[Message], sampling: Sampling) -> Generated:
    """One answer to ``messages``; JudgeError (after the backend's retries) when there is none."""
    own = getattr(judge, "generate_text", None)
    if callable(own):
        result = own(messages, sampling)
        if isinstance(result, Generated):
            return result
        if isinstance(result, JudgeResponse):
            return Generated(result.text, "text", None, dict(result.usage), result.latency_s)
        return Generated(str(result), "text")
    kind = type(judge).__name__
    if kind == "OpenAIJudge":
        return _openai_text(judge, messages, sampling)
    if kind == "HFInferenceJudge":
        return _hf_text(judge, messages, sampling)
    if kind == "LocalJudge" and callable(getattr(getattr(judge, "engine", None), "generate", None)):
        return _local_text(judge, messages, sampling)
    return _json_text(judge, messages, sampling)


def _require_text(judge: Judge, text: str | None, refusal: str | None = None) -> str:
    if not text:
        extra = f" (refusal: {refusal})" if refusal else ""
        raise JudgeError(f"{judge.name}: empty reply{extra}", judge=judge.name)
    return text


def _usage(raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    return {
        "prompt_tokens": int(getattr(raw, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(raw, "completion_tokens", 0) or 0),
        "total_tokens": int(getattr(raw, "total_tokens", 0) or 0),
    }


def _openai_text(judge: Any, messages: list[Message], sampling: Sampling) -> Generated:
    from ..judges.retry import call_with_retries

    client = judge._sdk() if callable(getattr(judge, "_sdk", None)) else judge._client
    kwargs: dict[str, Any] = {"model": judge.model, "temperature": sampling.temperature}
    if sampling.top_p is not None:
        kwargs["top_p"] = sampling.top_p
    if sampling.max_tokens is not None:
        kwargs["max_tokens"] = sampling.max_tokens
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    started = time.perf_counter()
    completion = call_with_retries(
        lambda: client.chat.completions.create(messages=messages, **kwargs),
        # "text" mode: a rejected request is an error, not a response-format fallback
        lambda exc: judge._classify(exc, "text", False),
        gate=judge._gate,
        max_retries=judge.max_retries,
        judge=judge.name,
    )
    latency = time.perf_counter() - started
    try:
        choice = completion.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError):
        raise JudgeError(f"{judge.name}: the server's reply is not a chat completion", judge=judge.name) from None
    text = _require_text(judge, message.content, getattr(message, "refusal", None))
    return Generated(text, "text", choice.finish_reason, _usage(completion.usage), latency)


def _hf_text(judge: Any, messages: list[Message], sampling: Sampling) -> Generated:
    from ..judges.retry import call_with_retries

    kwargs: dict[str, Any] = {
        "temperature": sampling.temperature,
        "max_tokens": sampling.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if judge.base_url:
        kwargs["model"] = judge.model
    if sampling.top_p is not None:
        kwargs["top_p"] = sampling.top_p
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    started = time.perf_counter()
    output = call_with_retries(
        lambda: judge._client.chat_completion(messages, **kwargs),
        lambda exc: judge._classify(exc, "text"),
        gate=judge._gate,
        max_retries=judge.max_retries,
        judge=judge.name,
    )
    latency = time.perf_counter() - started
    try:
        choice = output.choices[0]
        text = choice.message.content
    except (AttributeError, IndexError, TypeError):
        raise JudgeError(f"{judge.name}: the reply is not a chat completion", judge=judge.name) from None
    return Generated(_require_text(judge, text), "text", getattr(choice, "finish_reason", None),
                     _usage(getattr(output, "usage", None)), latency)


class _TextBatcher:
    """Runs concurrent free-text requests on one local engine as batches (unconstrained decoding).

    The engine's own queue batches schema-constrained verdicts only; this is the same
    leader/follower scheme for plain text: the first waiting thread collects the requests
    with the same sampling key that arrive within the judge's batch window, and generates
    them as one left-padded batch of up to ``batch_size`` rows.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._leading = False

    def run(self, request: JudgeRequest, key: Any, batch_size: int, window_s: float) -> Any:
        item: dict[str, Any] = {"request": request, "key": key, "result": None}
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()
        while True:
            with self._cond:
                while item["result"] is None and self._leading:
                    self._cond.wait()
                if item["result"] is not None:
                    return item["result"]
                self._leading = True
            try:
                self._lead(batch_size, window_s)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()

    def _lead(self, batch_size: int, window_s: float) -> None:
        with self._cond:
            if not self._queue:
                return
            first = self._queue[0]
            deadline = time.perf_counter() + window_s
            while True:
                same = [p for p in self._queue if p["key"] == first["key"]]
                remaining = deadline - time.perf_counter()
                if len(same) >= batch_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = same[:batch_size]
            taken = {id(p) for p in batch}
            self._queue = [p for p in self._queue if id(p) not in taken]
        try:
            results = self.engine.generate([p["request"] for p in batch], first["key"], constrained=False)
        except Exception as exc:  # noqa: BLE001 - a crash must not hang the other callers
            results = [JudgeError(f"the local model failed: {type(exc).__name__}: {exc}")] * len(batch)
        with self._cond:
            for item, result in zip(batch, results):
                item["result"] = result
            self._cond.notify_all()


_batchers: dict[int, _TextBatcher] = {}
_batchers_lock = threading.Lock()


def _local_text(judge: Any, messages: list[Message], sampling: Sampling) -> Generated:
    request = JudgeRequest(messages=tuple(messages), schema=GeneratedAnswer, sampling=sampling)
    key = judge._key(request)  # the judge's own sampling defaults
    options = getattr(judge, "options", None)
    batch_size = int(getattr(options, "batch_size", 8) or 8)
    window_s = float(getattr(options, "batch_window_s", 0.01) or 0.0)
    with _batchers_lock:
        batcher = _batchers.get(id(judge.engine))
        if batcher is None or batcher.engine is not judge.engine:
            batcher = _batchers[id(judge.engine)] = _TextBatcher(judge.engine)
    started = time.perf_counter()
    result = batcher.run(request, key, batch_size, window_s)
    latency = time.perf_counter() - started
    if isinstance(result, JudgeError):
        raise JudgeError(f"{judge.name}: {result}", judge=judge.name)
    completion = int(result.usage.get("completion_tokens", 0))
    finish = "length" if completion >= key.max_new_tokens else "stop"
    return Generated(_require_text(judge, result.text.strip()), "text", finish, dict(result.usage), latency)


def _json_text(judge: Judge, messages: list[Message], sampling: Sampling) -> Generated:
    from ..evaluation import parse_reply

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
    answer = parsed.answer  # type: ignore[attr-defined]
    return Generated(_require_text(judge, answer), "json", None, dict(response.usage),
                     time.perf_counter() - started)
