"""The batching engine: one loaded model, a queue, and ``model.generate()`` over left-padded batches.

Requests that arrive together from several threads (the plugin's workers) wait up to
``batch_window_s`` for each other and are generated as one left-padded batch of up to
``batch_size`` rows with the same sampling settings, through transformers' public
``generate()`` with a :class:`~.constraint.ConstrainedLogits` processor. In float32 (the
default) a greedy verdict does not depend on what it was batched with, up to float rounding;
``dtype="bfloat16"`` is faster on CPUs with bf16 support but batched and single outputs may differ.

Every torch call runs on the process's torch thread (:mod:`pytest_llmjudge.torch_thread`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from ...errors import ConfigError, JudgeError
from ...heap import collections_paused
from ...torch_thread import run_on_torch_thread
from ..base import JudgeResponse, Message, schema_of
from .constraint import (
    ConstrainedLogits,
    RowState,
    SamplingKey,
    as_logits_processor,
    build_tokenizer_tables,
    import_enforcer,
    json_enforcer,
)
from .model import LocalOptions, ModelSource, import_torch_stack, load_model
from .scoring import score_distribution, score_vocab


@dataclass
class Job:
    """One request waiting for the engine: the prompt, what constrains the reply, and its result."""

    messages: Sequence[Message]
    #: the schema the reply must validate against; None: free text
    schema: type[BaseModel] | None
    key: SamplingKey
    score_field: str | None = None
    score_values: tuple[int, ...] = ()
    batch_size: int = 1
    window_s: float = 0.0
    submitted: float = field(default_factory=time.perf_counter)
    result: JudgeResponse | JudgeError | None = None


class Engine:
    """One loaded model shared by every LocalJudge on it: tokenizer, enforcer tables, queue."""

    def __init__(self, source: ModelSource, opts: LocalOptions) -> None:
        self.torch, self.transformers = import_torch_stack()
        self.enforcer = import_enforcer()
        with collections_paused():  # ~1M long-lived objects (weights' wrappers, enforcer tables)
            run_on_torch_thread(self._setup, source, opts)

    def _setup(self, source: ModelSource, opts: LocalOptions) -> None:
        started = time.perf_counter()
        self.source = source
        self.tokenizer, self.model = load_model(source, opts)
        tokenizer, model = self.tokenizer, self.model
        self.device = str(model.device)
        stops: list[int] = []
        configured = model.generation_config.eos_token_id
        for value in ([configured] if isinstance(configured, int) else list(configured or [])):
            if value not in stops:
                stops.append(int(value))
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
            stops.append(int(tokenizer.eos_token_id))
        if not stops:
            raise ConfigError(f"local judge: {source.describe()} defines no end-of-sequence token")
        self.stop_ids = stops
        pad = model.generation_config.pad_token_id
        if pad is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
        self.pad_id = int(pad)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token_id = self.pad_id
        tokenizer.padding_side = "left"
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.context_len = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.tables = build_tokenizer_tables(self.enforcer, tokenizer, stops, self.vocab_size)
        self.load_s = time.perf_counter() - started
        self._score_vocab: dict[tuple[int, ...], list[int]] = {}
        self._gen_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._leading = False
        #: figures of the last generate call, for benchmarks and tests
        self.last_stats: dict[str, float] = {}

    # ---- queue

    def submit(self, jobs: Sequence[Job]) -> None:
        """Run the jobs (batched with whatever else is queued); returns when all have results."""
        with self._cond:
            self._queue.extend(jobs)
            self._cond.notify_all()
        for job in jobs:
            self._wait(job)

    def _wait(self, job: Job) -> None:
        while True:
            with self._cond:
                while job.result is None and self._leading:
                    self._cond.wait()
                if job.result is not None:
                    return
                self._leading = True
            try:
                self._lead()
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()

    def _lead(self) -> None:
        """Take the oldest job and, within its window, up to ``batch_size`` others with its key."""
        with self._cond:
            if not self._queue:
                return
            first = self._queue[0]
            deadline = time.perf_counter() + first.window_s
            while True:
                same = [j for j in self._queue if j.key == first.key]
                remaining = deadline - time.perf_counter()
                if len(same) >= first.batch_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = same[: first.batch_size]
            taken = {id(j) for j in batch}
            self._queue = [j for j in self._queue if id(j) not in taken]
        self.generate(batch)

    def _deliver(self, job: Job, result: JudgeResponse | JudgeError) -> None:
        if isinstance(result, JudgeResponse):
            result.latency_s = time.perf_counter() - job.submitted
        with self._cond:
            job.result = result
            self._cond.notify_all()

    # ---- generation

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text: the tokenizer's chat template, with a fallback for models without one."""
        tokenizer = self.tokenizer
        chat = [dict(m) for m in messages]
        if getattr(tokenizer, "chat_template", None):
            try:
                return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
            except Exception:  # noqa: BLE001 - any template error: retry without the system role
                # e.g. a template that rejects the system role: fold it into the first user turn
                system = "\n\n".join(m["content"] for m in chat if m.get("role") == "system")
                rest = [m for m in chat if m.get("role") != "system"]
                if system and rest:
                    rest[0] = {**rest[0], "content": system + "\n\n" + rest[0]["content"]}
                return str(tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True))
        lines = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in chat]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def generate(self, jobs: Sequence[Job], *, min_new_tokens: int | None = None) -> None:
        """Generate ``jobs`` (same key) as one batch, bypassing the queue; every job gets its result.

        ``min_new_tokens`` forbids stopping earlier in free-text rows (benchmarks).
        """
        try:
            run_on_torch_thread(self._generate, jobs, min_new_tokens)
        except Exception as exc:  # noqa: BLE001 - a crash must not hang the other callers
            message = f"the local judge failed: {type(exc).__name__}: {exc}"
            for job in jobs:
                if job.result is None:
                    self._deliver(job, JudgeError(message))

    def _row(self, job: Job) -> RowState:
        if job.schema is None:
            return RowState(None)
        row = RowState(json_enforcer(self.enforcer, self.tables, schema_of(job.schema)), job.schema)
        if job.score_field and job.score_values:
            values = tuple(job.score_values)
            vocab = self._score_vocab.get(values)
            if vocab is None:
                vocab = self._score_vocab[values] = score_vocab(self.tables.strings, values)
            row.capture_ids = vocab
            row.capture_index = self.torch.tensor(vocab, dtype=self.torch.long, device=self.device)
        return row

    def _generate(self, jobs: Sequence[Job], min_new_tokens: int | None) -> None:
        torch = self.torch
        key = jobs[0].key
        started = time.perf_counter()
        prompts: list[str] = []
        accepted: list[Job] = []
        for job in jobs:
            prompt = self.render(job.messages)
            length = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if self.context_len and length + key.max_new_tokens > self.context_len:
                self._deliver(job, JudgeError(
                    f"the prompt is {length} tokens and max_new_tokens={key.max_new_tokens}: more "
                    f"than the local judge's context of {self.context_len} tokens; shorten the "
                    "answer or context, or lower max_new_tokens"
                ))
                continue
            prompts.append(prompt)
            accepted.append(job)
        if not accepted:
            return
        rows = [self._row(job) for job in accepted]
        processor = ConstrainedLogits(torch, rows, self.stop_ids, key, min_new_tokens)
        config = self.transformers.GenerationConfig(
            max_new_tokens=key.max_new_tokens, min_new_tokens=None, do_sample=False, num_beams=1,
            eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
            bos_token_id=self.model.generation_config.bos_token_id,
        )
        with self._gen_lock, torch.inference_mode():
            inputs = self.tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
            inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
            sequences = self.model.generate(
                **inputs, generation_config=config,
                logits_processor=as_logits_processor(self.transformers, processor),
            )
        prompt_len = int(inputs["input_ids"].shape[1])
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        generated = sequences[:, prompt_len:].tolist()
        self.last_stats = {
            "rows": float(len(rows)), "steps": float(processor.steps),
            "generate_s": time.perf_counter() - started, "enforcer_s": processor.elapsed_s,
        }
        for job, row, tokens, prompt_count in zip(accepted, rows, generated, prompt_tokens):
            stopped = False
            for i, token in enumerate(tokens):
                if token in processor.stop_set:
                    tokens, stopped = tokens[:i], True
                    break
            self._deliver(job, self._result(job, row, tokens, int(prompt_count), stopped))

    def _result(self, job: Job, row: RowState, tokens: list[int], prompt_count: int,
                stopped: bool) -> JudgeResponse | JudgeError:
        """The response for a finished row: validated, with its score distribution."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        usage = {"prompt_tokens": prompt_count, "completion_tokens": len(tokens),
                 "total_tokens": prompt_count + len(tokens)}
        finish = "stop" if stopped else "length"
        if job.schema is None:
            return JudgeResponse(text=text, usage=usage, finish_reason=finish)
        try:
            parsed = job.schema.model_validate_json(text)
        except ValidationError as exc:
            if not stopped:
                return JudgeError(
                    f"the local judge ran out of tokens (max_new_tokens={job.key.max_new_tokens}) "
                    "before closing the JSON; raise max_new_tokens"
                )
            return JudgeError(
                f"the local judge's constrained reply does not validate ({exc.error_count()} "
                f"errors: {exc.errors()[0]['msg']}): {text[:200]!r}"
            )
        distribution = None
        if row.capture_ids and job.score_field:
            distribution = score_distribution(
                text, tokens, row, job.score_field, job.score_values, self.tables.strings, self.tables.decode
            )
        return JudgeResponse(text=text, usage=usage, score_distribution=distribution, parsed=parsed,
                             finish_reason=finish)
