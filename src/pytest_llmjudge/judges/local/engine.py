"""The batching engine: one loaded model, a queue, and a greedy decode loop over public model calls.

Requests that arrive together from several threads (the plugin's workers) wait up to
``batch_window_s`` for each other and are decoded as one left-padded batch of up to
``batch_size`` rows with the same sampling settings. Batching is continuous: a row that finishes
leaves the batch at once (``DynamicCache.batch_select_indices``), and queued requests with the same
settings are prefilled and merged into the running batch as places open.

Each step is one plain forward call, ``model(input_ids, attention_mask, position_ids,
past_key_values=DynamicCache, use_cache=True)`` (``cache=`` where the model's forward takes it:
transformers 5.x renamed the argument), then :class:`~.constraint.Constrainer` masks the
scores and the next token is the arg-max (or sampled with the engine's own ``torch.Generator``,
never the process's global random state). Cache handling is in :mod:`.kv` (public cache APIs of
transformers 4.57 and 5.x).

Prompts of one metric share a long head (instructions, rubric). Its keys/values are computed
once, repeated for every row of a batch, and remembered for later prompts that start the same way
(causal attention: a prefix's keys/values do not depend on what follows). The layout of a batch is
``[shared head][padding][own tail]`` with the padding masked out.

In float32 (the default) a greedy verdict does not depend on what it was batched with, up to float
rounding; ``dtype="bfloat16"`` is faster on CPUs with bf16 support but batched and single outputs
may differ. Every torch call runs on the process's torch thread (:mod:`pytest_llmjudge.torch_thread`).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ...errors import ConfigError, JudgeError
from ...heap import collections_paused
from ...torch_thread import run_on_torch_thread
from ..base import JudgeResponse, Message, schema_of
from . import kv
from .constraint import (
    Constrainer,
    RowState,
    SamplingKey,
    build_tokenizer_tables,
    import_enforcer,
    json_enforcer,
    json_reserve,
    sample,
)
from .model import LocalOptions, ModelSource, default_cache_dir, import_torch_stack, load_model
from .scoring import score_distribution, score_vocab

#: a shared prompt head shorter than this is recomputed per row (not worth a separate pass)
MIN_SHARED_HEAD = 32
#: prompts whose keys/values the engine keeps for the next prompts' shared heads (~16 MB each for SmolLM2)
REMEMBERED_HEADS = 4


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


@dataclass
class _Row:
    """A job being decoded: its prompt tokens and constraint state."""

    job: Job
    prompt_ids: list[int]
    state: RowState
    stopped: bool = False


class Engine:
    """One loaded model shared by every LocalJudge on it: tokenizer, enforcer tables, queue."""

    def __init__(self, source: ModelSource, opts: LocalOptions) -> None:
        # no automatic collection while importing torch and transformers and loading: ~1M
        # long-lived objects (modules, weights' wrappers, enforcer tables) that the collector's
        # passes would walk again and again (~0.7 s of a ~4 s load in a fresh process)
        with collections_paused():
            self.torch, self.transformers = import_torch_stack()
            self.enforcer = import_enforcer()
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
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.context_len = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        parameters = inspect.signature(model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in parameters
        # transformers 5.x renames the forward argument past_key_values to cache (the old name is
        # deprecated, with a warning on every call); 4.x knows only past_key_values
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self.tables = build_tokenizer_tables(self.enforcer, tokenizer, stops, self.vocab_size,
                                             opts.cache_dir or default_cache_dir())
        self.constrainer = Constrainer(self.torch, self.tables, stops, self.vocab_size, self.device)
        self.load_s = time.perf_counter() - started
        self._schemas: dict[type[BaseModel], dict[str, Any]] = {}
        self._score_vocab: dict[tuple[int, ...], list[int]] = {}
        self._heads: list[tuple[list[int], kv.Layers]] = []
        self._gen_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._leading = False
        #: figures of the last decode run, for benchmarks and tests
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
            self._dequeue(batch)
        self.generate(batch, refill=True)

    def _take(self, key: SamplingKey, count: int) -> list[Job]:
        """Up to ``count`` queued jobs that can join a running batch with ``key``."""
        if count <= 0:
            return []
        with self._cond:
            more = [j for j in self._queue if j.key == key][:count]
            self._dequeue(more)
        return more

    def _dequeue(self, jobs: Sequence[Job]) -> None:
        """Remove ``jobs`` from the queue (the caller holds ``_cond``)."""
        if jobs:
            taken = {id(j) for j in jobs}
            self._queue = [j for j in self._queue if id(j) not in taken]

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

    def generate(self, jobs: Sequence[Job], *, refill: bool = False, min_new_tokens: int | None = None) -> None:
        """Decode ``jobs`` (same key) as one batch; every job gets its result.

        With ``refill`` queued jobs with the same key join as rows finish (the queue's path);
        without, only ``jobs`` run (benchmarks, tests). ``min_new_tokens`` forbids stopping
        earlier in free-text rows (benchmarks).
        """
        handled = list(jobs)
        try:
            run_on_torch_thread(self._decode, handled, refill, min_new_tokens)
        except Exception as exc:  # noqa: BLE001 - a crash must not hang the other callers
            message = f"the local judge failed: {type(exc).__name__}: {exc}"
            for job in handled:
                if job.result is None:
                    self._deliver(job, JudgeError(message))

    def _schema_json(self, schema: type[BaseModel]) -> dict[str, Any]:
        cached = self._schemas.get(schema)
        if cached is None:
            cached = self._schemas[schema] = schema_of(schema)
        return cached

    def _rows(self, jobs: Sequence[Job]) -> list[_Row]:
        """Rows for the jobs whose prompt fits the context; the others get their JudgeError."""
        rows = []
        for job in jobs:
            key = job.key
            ids = self.tokenizer(self.render(job.messages), add_special_tokens=False)["input_ids"]
            if self.context_len and len(ids) + key.max_new_tokens > self.context_len:
                self._deliver(job, JudgeError(
                    f"the prompt is {len(ids)} tokens and max_new_tokens={key.max_new_tokens}: more "
                    f"than the local judge's context of {self.context_len} tokens; shorten the "
                    "answer or context, or lower max_new_tokens"
                ))
                continue
            state = RowState(None, max_new_tokens=key.max_new_tokens)
            if job.schema is not None:
                schema_json = self._schema_json(job.schema)
                state = RowState(json_enforcer(self.enforcer, self.tables, schema_json), job.schema,
                                 key.max_new_tokens, json_reserve(schema_json, key.max_new_tokens))
                if job.score_field and job.score_values:
                    values = tuple(job.score_values)
                    vocab = self._score_vocab.get(values)
                    if vocab is None:
                        vocab = self._score_vocab[values] = score_vocab(self.tables.strings, values)
                    state.capture_ids = vocab
                    state.capture_index = self.torch.tensor(vocab, dtype=self.torch.long, device=self.device)
            rows.append(_Row(job, list(ids), state))
        return rows

    def _forward(self, input_ids: Any, attention: Any, positions: Any, cache: Any) -> Any:
        """One forward pass; the float32 logits of the last position of each row."""
        extra: dict[str, Any] = {"logits_to_keep": 1} if self._logits_to_keep else {}
        extra[self._cache_arg] = cache
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                         use_cache=True, **extra)
        return out.logits[:, -1, :].float()

    def _prefill(self, rows: Sequence[_Row]) -> tuple[Any, Any, Any]:
        """Run the rows' prompts: (cache, 2-D attention mask, next-token logits). See the module doc."""
        torch, transformers = self.torch, self.transformers
        count = len(rows)
        known, known_layers = self._known_head(rows)
        shared = max(known, _shared_head(rows) if count > 1 else 0)
        if known:
            cache = kv.build(transformers, kv.first_positions(known_layers, known))
        else:
            cache = transformers.DynamicCache()
        if shared > known:
            head = torch.tensor([rows[0].prompt_ids[known:shared]], dtype=torch.long, device=self.device)
            attention = torch.ones((1, shared), dtype=torch.long, device=self.device)
            positions = torch.arange(known, shared, device=self.device)[None]
            self._forward(head, attention, positions, cache)
            self._remember_head(rows[0].prompt_ids[:shared], cache)
        if shared:
            kv.repeat_rows(cache, count)
        length = max(len(r.prompt_ids) for r in rows) - shared
        ids = torch.full((count, length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((count, shared + length), dtype=torch.long)
        attention[:, :shared] = 1
        for i, row in enumerate(rows):
            tail = row.prompt_ids[shared:]
            ids[i, length - len(tail):] = torch.tensor(tail, dtype=torch.long)
            attention[i, shared + length - len(tail):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        ids, attention, positions = ids.to(self.device), attention.to(self.device), positions.to(self.device)
        logits = self._forward(ids, attention, positions, cache)
        if count == 1:  # no padding: the whole prompt may head the next one
            self._remember_head(rows[0].prompt_ids, cache)
        return cache, attention, logits

    def _known_head(self, rows: Sequence[_Row]) -> tuple[int, kv.Layers]:
        """The longest remembered prompt head that starts every row's prompt: (tokens, keys/values)."""
        limit = min(len(r.prompt_ids) for r in rows) - 1  # every row keeps a token of its own
        best, best_layers = 0, []
        for tokens, layers in self._heads:
            agree = _agreeing(tokens, rows, limit)
            if agree > best:
                best, best_layers = agree, layers
        return (best, best_layers) if best >= MIN_SHARED_HEAD else (0, [])

    def forget_prompt_heads(self) -> None:
        """Drop the remembered prompt heads (benchmarks compare runs that start alike)."""
        self._heads = []

    def _remember_head(self, tokens: list[int], cache: Any) -> None:
        """Keep a copy of row 0's keys/values for ``tokens`` (a few prompts, newest first)."""
        n = len(tokens)
        if n < MIN_SHARED_HEAD:
            return
        layers = kv.head(kv.layers_of(cache), n)
        kept = [(t, v) for t, v in self._heads if t != tokens[: len(t)]]  # drop what this extends
        self._heads = [(list(tokens), layers), *kept][:REMEMBERED_HEADS]

    def _decode(self, jobs: list[Job], refill: bool, min_new_tokens: int | None) -> None:
        """Decode ``jobs`` and deliver each result when its row ends (see the module doc).

        ``jobs`` grows by the queued jobs taken in, so the caller can fail them all on a crash.
        """
        torch, transformers = self.torch, self.transformers
        key = jobs[0].key
        started = time.perf_counter()
        steps = total_rows = max_active = 0
        constrainer = self.constrainer
        enforcer_before = constrainer.elapsed_s
        generator = None
        if key.do_sample:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(key.seed if key.seed is not None else time.time_ns() % 2**63)
        batch_size = max((j.batch_size for j in jobs), default=1)
        rows: list[_Row] = []
        cache: Any = None
        attention: Any = None
        logits: Any = None
        waiting = list(jobs)
        prefill_s = 0.0
        with self._gen_lock, torch.inference_mode():
            while True:
                if refill and len(rows) + len(waiting) < batch_size:
                    more = self._take(key, batch_size - len(rows) - len(waiting))
                    jobs.extend(more)
                    waiting.extend(more)
                if waiting:
                    new_rows = self._rows(waiting)
                    waiting = []
                    if new_rows:
                        prefill_started = time.perf_counter()
                        total_rows += len(new_rows)
                        new_cache, new_attention, new_logits = self._prefill(new_rows)
                        if rows:
                            cache, attention = kv.merge(torch, transformers, [cache, new_cache],
                                                        [attention, new_attention])
                            logits = torch.cat([logits, new_logits])
                        else:
                            cache, attention, logits = new_cache, new_attention, new_logits
                        rows.extend(new_rows)
                        prefill_s += time.perf_counter() - prefill_started
                if not rows:
                    break
                max_active = max(max_active, len(rows))
                steps += 1
                states = [r.state for r in rows]
                scores = constrainer(states, logits, min_new_tokens)
                if generator is not None:
                    next_tokens = sample(torch, scores, key, generator)
                else:
                    next_tokens = scores.argmax(dim=-1)
                keep = []
                for i, (row, token) in enumerate(zip(rows, next_tokens.tolist())):
                    if token in constrainer.stop_set:
                        row.stopped = True
                        self._deliver(row.job, self._result(row))
                    elif len(row.state.tokens) + 1 >= key.max_new_tokens:
                        row.state.tokens.append(int(token))
                        self._deliver(row.job, self._result(row))
                    else:
                        row.state.tokens.append(int(token))
                        keep.append(i)
                if len(keep) < len(rows):
                    rows = [rows[i] for i in keep]
                    if not rows:
                        cache = attention = logits = None
                        continue
                    index = torch.tensor(keep, dtype=torch.long, device=attention.device)
                    kv.select_rows(cache, index)
                    attention = attention[index]
                    next_tokens = next_tokens[index]
                    used = attention.sum(dim=0) > 0
                    if not bool(used.all()):  # drop columns that are padding in every remaining row
                        columns = used.nonzero().squeeze(1)
                        cache = kv.keep_columns(torch, transformers, cache, columns)
                        attention = attention[:, columns]
                attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
                positions = torch.tensor([[len(r.prompt_ids) + len(r.state.tokens) - 1] for r in rows],
                                         dtype=torch.long, device=attention.device)
                logits = self._forward(next_tokens[:, None], attention, positions, cache)
        self.last_stats = {
            "rows": float(total_rows), "steps": float(steps), "max_active": float(max_active),
            "generate_s": time.perf_counter() - started, "prefill_s": prefill_s,
            "enforcer_s": constrainer.elapsed_s - enforcer_before,
        }

    def _result(self, row: _Row) -> JudgeResponse | JudgeError:
        """The response for a finished row: validated, with its score distribution."""
        job, state = row.job, row.state
        tokens = state.tokens
        text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        prompt_count = len(row.prompt_ids)
        usage = {"prompt_tokens": prompt_count, "completion_tokens": len(tokens),
                 "total_tokens": prompt_count + len(tokens)}
        finish = "stop" if row.stopped else "length"
        if job.schema is None:
            return JudgeResponse(text=text, usage=usage, finish_reason=finish)
        try:
            parsed = job.schema.model_validate_json(text)
        except ValidationError as exc:
            if not row.stopped:
                return JudgeError(
                    f"the local judge ran out of tokens (max_new_tokens={job.key.max_new_tokens}) "
                    "before closing the JSON; raise max_new_tokens"
                )
            return JudgeError(
                f"the local judge's constrained reply does not validate ({exc.error_count()} "
                f"errors: {exc.errors()[0]['msg']}): {text[:200]!r}"
            )
        distribution = None
        if state.capture_ids and job.score_field:
            distribution = score_distribution(
                text, tokens, state, job.score_field, job.score_values, self.tables.strings, self.tables.decode
            )
        return JudgeResponse(text=text, usage=usage, score_distribution=distribution, parsed=parsed,
                             finish_reason=finish)


def _shared_head(rows: Sequence[_Row]) -> int:
    """Tokens at the start of every row's prompt that are the same in all; 0 when too few.

    Every row keeps at least one token of its own: the last prompt position yields its logits.
    """
    shared = _agreeing(rows[0].prompt_ids, rows[1:], min(len(r.prompt_ids) for r in rows) - 1)
    return shared if shared >= MIN_SHARED_HEAD else 0


def _agreeing(tokens: Sequence[int], rows: Sequence[_Row], limit: int) -> int:
    """How many leading tokens every row's prompt has in common with ``tokens`` (at most ``limit``)."""
    agree = min(limit, len(tokens))
    for row in rows:
        ids = row.prompt_ids
        for i in range(agree):
            if ids[i] != tokens[i]:
                agree = i
                break
    return agree
