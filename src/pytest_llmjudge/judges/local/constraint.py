"""Schema-constrained decoding: lm-format-enforcer's public ``TokenEnforcer``, one per batch row.

Every batch row has its own :class:`RowState`: a ``TokenEnforcer`` over a ``JsonSchemaParser``
(fields in schema order) or none (free text). At each step :class:`Constrainer` masks each row's
next-token scores to the tokens that keep its JSON valid; a row whose JSON object is complete may
only stop. Rows with a score field record the pre-mask logits of their score-vocabulary tokens,
from which :mod:`.scoring` computes the score distribution.

Cost per token: the enforcer returns a Python list of allowed ids (inside a JSON string, nearly
the whole vocabulary). Turning that list into a tensor every step cost more than the enforcer
itself, so :class:`MaskCache` keeps one boolean mask per distinct allowed list: a list is looked up
by (length, first, last id) and confirmed by comparing it with the cached copy (a C-level list
comparison), so a hit is exact and costs microseconds.

Closing in time: when a row has ``reserve`` tokens left of its budget, it is steered to close its
JSON: where a token that starts with ``"``, ``}`` or ``]`` (closing the string, object or array) is
allowed, only those are; otherwise tokens that are only whitespace are dropped. The reason is cut
short, but the verdict is complete and validates.

The tokenizer tables are built here against lm-format-enforcer's public
``TokenEnforcerTokenizerData`` instead of its transformers integration module, which imports
transformers internals that moved in 5.x.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ...errors import ConfigError
from .model import INSTALL_HINT


@dataclass(frozen=True)
class Enforcer:
    """lm-format-enforcer's public classes (imported on first use)."""

    TokenEnforcer: Any
    TokenEnforcerTokenizerData: Any
    JsonSchemaParser: Any


def import_enforcer() -> Enforcer:
    """Import lm-format-enforcer, or say how to install it."""
    try:
        from lmformatenforcer import (
            JsonSchemaParser,
            TokenEnforcer,
            TokenEnforcerTokenizerData,
        )
    except ImportError as exc:
        raise ConfigError(f"the local judge needs lm-format-enforcer ({exc}): {INSTALL_HINT}") from None
    return Enforcer(TokenEnforcer, TokenEnforcerTokenizerData, JsonSchemaParser)


@dataclass
class TokenizerTables:
    """Per-tokenizer tables, built once per model: the enforcer's data and each token's text."""

    data: Any
    #: the text each regular token adds when it follows another token (leading spaces kept)
    strings: dict[int, str]
    decode: Callable[[list[int]], str]
    #: every printable character the regular tokens write (see :func:`json_enforcer`)
    characters: str = ""
    _alphabets: dict[str, str] = field(default_factory=dict)

    def alphabet(self, base: str) -> str:
        """``base`` followed by the tokens' characters it lacks (computed once per ``base``)."""
        merged = self._alphabets.get(base)
        if merged is None:
            present = set(base)
            merged = self._alphabets[base] = base + "".join(c for c in self.characters if c not in present)
        return merged


def regular_tokens(tokenizer: Any, stop_ids: list[int], vocab_size: int) -> list[tuple[int, str, bool]]:
    """``(id, text, starts a word)`` of every regular token, as ``TokenEnforcerTokenizerData`` takes them.

    Unlike lm-format-enforcer's own transformers integration this leaves out every added special
    token (a GGUF-converted tokenizer may not list ``<|im_end|>`` among its special ids, and a
    model that may write it inside a JSON string stops mid-object) and decodes without the
    clean-up of spaces (which turns the token ``" ."`` into ``"."``). Tokens that decode to an
    incomplete UTF-8 sequence (U+FFFD: byte-fallback pieces of a character) are left out too: the
    enforcer would see the character only once the next token completes it, a character the
    parser may not know (see :func:`json_enforcer`); JSON text is written from whole characters.
    """
    special = set(tokenizer.all_special_ids) | set(stop_ids)
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special |= {i for i, tok in added.items() if getattr(tok, "special", False)}
    ids = [i for i in range(min(len(tokenizer), vocab_size)) if i not in special]
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the public handle of a fast tokenizer
    if backend is not None and hasattr(backend, "decode_batch"):
        with_zero = backend.decode_batch([[zero, i] for i in ids], skip_special_tokens=False)
        alone = backend.decode_batch([[i] for i in ids], skip_special_tokens=False)
    else:
        with_zero = [tokenizer.decode([zero, i], clean_up_tokenization_spaces=False) for i in ids]
        alone = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    return [(i, after_zero[1:], len(after_zero) - 1 > len(single))
            for i, after_zero, single in zip(ids, with_zero, alone)
            if "\ufffd" not in after_zero and "\ufffd" not in single]


#: bump when :func:`regular_tokens` changes what it computes
_TOKENS_FORMAT = "2"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _tokens_cache_file(tokenizer: Any, stop_ids: list[int], vocab_size: int, cache_dir: Path) -> Path | None:
    """Where the regular-token table of a tokenizer read from a ``tokenizer.json`` is kept.

    Under ``cache_dir/tokens``, named by a digest of what the table depends on: the tokenizer's
    files, its length, the stop ids, the vocabulary size, and the transformers and tokenizers
    versions (which decode the tokens), so a changed tokenizer or library never reads a stale table.
    """
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    files = [folder / "tokenizer.json", folder / "tokenizer_config.json"]
    if not files[0].is_file():
        return None
    versions = "|".join(_version(name) for name in ("transformers", "tokenizers"))  # they decode
    digest = hashlib.sha256(f"{_TOKENS_FORMAT}|{versions}|{stop_ids}|{vocab_size}|{len(tokenizer)}".encode())
    for path in files:
        if path.is_file():
            digest.update(path.read_bytes())
    return cache_dir / "tokens" / f"{digest.hexdigest()[:16]}.json"


def cached_regular_tokens(tokenizer: Any, stop_ids: list[int], vocab_size: int,
                          cache_dir: Path | None) -> list[tuple[int, str, bool]]:
    """:func:`regular_tokens`, kept in ``cache_dir`` for tokenizers read from a ``tokenizer.json``.

    The table costs ~1 s to compute (100k decodes) and ~30 ms to read back.
    """
    path = _tokens_cache_file(tokenizer, stop_ids, vocab_size, cache_dir) if cache_dir else None
    if path is not None and path.is_file():
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            return [(int(i), str(text), bool(new)) for i, text, new in rows]
        except (OSError, ValueError, TypeError):
            pass  # unreadable: compute it again and overwrite
    table = regular_tokens(tokenizer, stop_ids, vocab_size)
    if path is not None:
        _write_atomically(path, table)
    return table


def _write_atomically(path: Path, table: list[tuple[int, str, bool]]) -> None:
    """Write ``table`` as JSON to ``path`` via a temporary file; failures leave nothing behind."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                         prefix=f".{path.name}.") as tmp:
            tmp_name = tmp.name
            json.dump(table, tmp, ensure_ascii=False)
        os.replace(tmp_name, path)
    except OSError:  # a read-only or full cache: the table is computed every time
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def build_tokenizer_tables(enforcer: Enforcer, tokenizer: Any, stop_ids: list[int], vocab_size: int,
                           cache_dir: Path | None = None) -> TokenizerTables:
    """lm-format-enforcer's ``TokenEnforcerTokenizerData`` for ``tokenizer`` (see :func:`regular_tokens`)."""
    regular = cached_regular_tokens(tokenizer, stop_ids, vocab_size, cache_dir)
    strings = {i: text for i, text, _ in regular}

    def decode(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens, clean_up_tokenization_spaces=False)).rstrip("\ufffd")

    eos: int | list[int] = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    data = enforcer.TokenEnforcerTokenizerData(regular, decode, eos, False, vocab_size)
    characters = sorted({c for text in strings.values() for c in text if c.isprintable() and c not in '"\\'})
    return TokenizerTables(data, strings, decode, "".join(characters))


def json_enforcer(enforcer: Enforcer, tables: TokenizerTables, schema_json: dict[str, Any]) -> Any:
    """A fresh ``TokenEnforcer`` for one reply that must validate against ``schema_json``."""
    parser = enforcer.JsonSchemaParser(schema_json)
    token_enforcer = enforcer.TokenEnforcer(tables.data, parser)
    # After the TokenEnforcer: it replaces the parser's config (a public property) by one whose
    # alphabet (what a JSON string may contain) is the characters that are a token by themselves.
    # A character outside it (one only longer tokens write, or byte-fallback pieces: SmolLM2 writes
    # "э" as two) ends the string and then the whole object in the parser's eyes: it allowed only
    # the stop token and the reply was cut mid-string. The alphabet is widened to every printable
    # character the tokens write.
    config = parser.config
    config.alphabet = tables.alphabet(config.alphabet)
    config.force_json_field_order = True  # reason before score, as the prompts ask
    return token_enforcer


def json_reserve(schema_json: dict[str, Any], max_new_tokens: int) -> int:
    """Tokens kept back at the end of the budget to close a reply to ``schema_json``.

    About what closing a string and writing the remaining fields takes (``", "score": 3}``: ~8
    tokens with SmolLM2's tokenizer), per top-level field, never more than half the budget.
    """
    fields = len(schema_json.get("properties") or {}) or 1
    return min(12 + 8 * fields, max_new_tokens // 2)


@dataclass
class RowState:
    """One batch row's constraint: its enforcer (None: free text), budget and recorded score logits."""

    enforcer: Any | None
    schema: type[BaseModel] | None = None
    max_new_tokens: int = 1024
    #: from this many tokens left on, the row is steered to close its JSON (see the module doc)
    reserve: int = 0
    #: tokens whose pre-mask logits are recorded at every step (the score vocabulary)
    capture_ids: list[int] = field(default_factory=list)
    capture_index: Any | None = None
    tokens: list[int] = field(default_factory=list)
    #: per step: (pre-mask logits of capture_ids, which were allowed, log-sum-exp over allowed)
    captured: list[tuple[Any, Any, float]] = field(default_factory=list)
    #: steps at which the row was steered to close its JSON
    closing_steps: int = 0

    @property
    def closing(self) -> bool:
        return self.max_new_tokens - len(self.tokens) <= self.reserve


@dataclass(frozen=True)
class SamplingKey:
    """How the next token is picked; rows generated together share one key."""

    temperature: float = 0.0
    top_p: float | None = None
    max_new_tokens: int = 1024
    seed: int | None = None

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0


class MaskCache:
    """Boolean masks (True: blocked) of allowed-token lists, exact and reused (see the module doc)."""

    #: lists shorter than this are masked directly (cheap), not cached
    MIN_CACHED = 256
    #: distinct lists kept (each mask is one byte per vocabulary entry)
    LIMIT = 512

    def __init__(self, torch: Any, vocab_size: int, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.all_blocked = torch.ones(vocab_size, dtype=torch.bool, device=device)
        self._cached: dict[tuple[int, int, int], list[tuple[list[int], Any]]] = {}
        self._count = 0
        self.hits = self.misses = 0

    def build(self, allowed: Sequence[int]) -> Any:
        mask = self.all_blocked.clone()
        if allowed:
            mask.index_fill_(0, self.torch.tensor(allowed, dtype=self.torch.long, device=self.device), False)
        return mask

    def blocked(self, allowed: list[int]) -> Any:
        """The mask of ``allowed``; callers must not modify it."""
        if len(allowed) < self.MIN_CACHED:
            return self.build(allowed)
        key = (len(allowed), allowed[0], allowed[-1])
        entries = self._cached.setdefault(key, [])
        for ids, mask in entries:
            if ids == allowed:
                self.hits += 1
                return mask
        self.misses += 1
        if self._count >= self.LIMIT:
            self._cached = {key: []}
            entries = self._cached[key]
            self._count = 0
        mask = self.build(allowed)
        entries.append((list(allowed), mask))
        self._count += 1
        return mask


class Constrainer:
    """Masks each row's next-token scores in place (see the module doc); times itself."""

    def __init__(self, torch: Any, tables: TokenizerTables, stop_ids: list[int], vocab_size: int,
                 device: Any) -> None:
        self.torch = torch
        self.stop_ids = stop_ids
        self.stop_set = frozenset(stop_ids)
        self.masks = MaskCache(torch, vocab_size, device)
        self.stop_only = self.masks.build([stop_ids[0]])
        closers = [i for i, text in tables.strings.items() if text.lstrip(" \t\n\r")[:1] in ('"', "}", "]")]
        blanks = [i for i, text in tables.strings.items() if text and not text.strip(" \t\n\r")]
        self.closers = ~self.masks.build(closers)  # True: a closing token
        self.not_blank = self.masks.build(blanks)  # True: not whitespace-only
        self.elapsed_s = 0.0

    def __call__(self, rows: Sequence[RowState], scores: Any, min_new_tokens: int | None = None) -> Any:
        """Mask ``scores`` (rows x vocab, float32) in place and return it."""
        started = time.perf_counter()
        torch = self.torch
        for i, row in enumerate(rows):
            if row.enforcer is None:  # free text
                if min_new_tokens and len(row.tokens) < min_new_tokens:
                    scores[i, self.stop_ids] = float("-inf")
                continue
            allowed = row.enforcer.get_allowed_tokens(row.tokens)
            allowed = getattr(allowed, "allowed_tokens", allowed)  # a TokenList since 0.11
            if allowed and allowed[-1] in self.stop_set:  # the JSON object is complete: stop
                blocked = self.stop_only
            else:
                blocked = self.masks.blocked(allowed)
                if row.closing:
                    blocked = self._closing(blocked)
                    row.closing_steps += 1
            if row.capture_index is not None:
                index = row.capture_index
                lse = float(torch.logsumexp(scores[i].masked_fill(blocked, float("-inf")), dim=-1))
                row.captured.append((scores[i, index].clone(), ~blocked[index], lse))
            scores[i].masked_fill_(blocked, float("-inf"))
        self.elapsed_s += time.perf_counter() - started
        return scores

    def _closing(self, blocked: Any) -> Any:
        """``blocked`` narrowed to the tokens that close the JSON soonest (see the module doc)."""
        allowed = ~blocked
        for preferred in (self.closers, self.not_blank):
            keep = allowed & preferred
            if bool(keep.any()):
                return ~keep
        return blocked


def sample(torch: Any, scores: Any, key: SamplingKey, generator: Any) -> Any:
    """One token per row: temperature and nucleus (top-p) sampling with the caller's generator."""
    logits = scores / max(key.temperature, 1e-5)
    if key.top_p is not None and key.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        ordered_probs = ordered.softmax(dim=-1)
        drop = ordered_probs.cumsum(dim=-1) - ordered_probs > key.top_p  # keep the token that crosses top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)
