"""Schema-constrained decoding: lm-format-enforcer's public ``TokenEnforcer`` behind a transformers ``LogitsProcessor``.

Every batch row has its own :class:`RowState`: a ``TokenEnforcer`` over a ``JsonSchemaParser``
(fields in schema order) or none (free text). At each step :class:`ConstrainedLogits` masks each
row's scores to the tokens that keep its JSON valid; a row whose JSON object is complete may only
stop. Rows with a score field record the pre-mask logits of their score-vocabulary tokens, from
which :mod:`.scoring` computes the score distribution. Sampling (temperature, top-p, a seed) is
done here too, with the processor's own ``torch.Generator``, so ``generate()`` itself runs greedy
and the process's global random state is never touched.

The tokenizer tables are built here against lm-format-enforcer's public
``TokenEnforcerTokenizerData`` instead of its transformers integration module, which imports
transformers internals that moved in 5.x.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


def build_tokenizer_tables(enforcer: Enforcer, tokenizer: Any, stop_ids: list[int], vocab_size: int) -> TokenizerTables:
    """lm-format-enforcer's ``TokenEnforcerTokenizerData`` for ``tokenizer``.

    Unlike lm-format-enforcer's own transformers integration this leaves out every added special
    token (a GGUF-converted tokenizer may not list ``<|im_end|>`` among its special ids, and a
    model that may write it inside a JSON string stops mid-object) and decodes without the
    clean-up of spaces (which turns the token ``" ."`` into ``"."``).
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
    regular = []
    strings: dict[int, str] = {}
    for i, after_zero, single in zip(ids, with_zero, alone):
        text = after_zero[1:]
        regular.append((i, text, len(text) > len(single)))
        strings[i] = text

    def decode(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens, clean_up_tokenization_spaces=False)).rstrip("\ufffd")

    eos: int | list[int] = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    data = enforcer.TokenEnforcerTokenizerData(regular, decode, eos, False, vocab_size)
    return TokenizerTables(data, strings, decode)


def json_enforcer(enforcer: Enforcer, tables: TokenizerTables, schema_json: dict[str, Any]) -> Any:
    """A fresh ``TokenEnforcer`` for one reply that must validate against ``schema_json``."""
    parser = enforcer.JsonSchemaParser(schema_json)
    token_enforcer = enforcer.TokenEnforcer(tables.data, parser)
    parser.config.force_json_field_order = True  # reason before score, as the prompts ask
    return token_enforcer


@dataclass
class RowState:
    """One batch row's constraint: its enforcer (None: free text) and its recorded score logits."""

    enforcer: Any | None
    schema: type[BaseModel] | None = None
    #: tokens whose pre-mask logits are recorded at every step (the score vocabulary)
    capture_ids: list[int] = field(default_factory=list)
    capture_index: Any | None = None
    tokens: list[int] = field(default_factory=list)
    #: per step: (pre-mask logits of capture_ids, which were allowed, log-sum-exp over allowed)
    captured: list[tuple[Any, Any, float]] = field(default_factory=list)
    done: bool = False


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


class ConstrainedLogits:
    """A transformers ``LogitsProcessor``: masks, records score logits, samples (see the module doc).

    ``generate()`` calls it once per step with the sequences so far (prompt included, left
    padded) and the next-token scores of every row; it returns the masked scores.
    """

    def __init__(self, torch: Any, rows: Sequence[RowState], stop_ids: list[int], key: SamplingKey,
                 min_new_tokens: int | None = None) -> None:
        self.torch = torch
        self.rows = list(rows)
        self.stop_ids = stop_ids
        self.stop_set = frozenset(stop_ids)
        self.key = key
        self.min_new_tokens = min_new_tokens
        self.prompt_len: int | None = None
        self.elapsed_s = 0.0
        self.steps = 0
        self.generator = None
        if key.do_sample:
            self.generator = torch.Generator()
            self.generator.manual_seed(key.seed if key.seed is not None else time.time_ns() % 2**63)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        started = time.perf_counter()
        torch = self.torch
        self.steps += 1
        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        else:
            for row, token in zip(self.rows, input_ids[:, -1].tolist()):
                if not row.done:
                    if token in self.stop_set:
                        row.done = True
                    else:
                        row.tokens.append(int(token))
        scores = scores.float()
        mask = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            if row.done:  # generate() writes padding there anyway
                mask[i] = 0.0
                continue
            if row.enforcer is None:  # free text
                mask[i] = 0.0
                if self.min_new_tokens and len(row.tokens) < self.min_new_tokens:
                    mask[i, self.stop_ids] = float("-inf")
                continue
            allowed = row.enforcer.get_allowed_tokens(row.tokens)
            allowed = getattr(allowed, "allowed_tokens", allowed)  # a TokenList since 0.11
            if allowed and allowed[-1] in self.stop_set:  # the JSON object is complete: stop
                mask[i, self.stop_ids[0]] = 0.0
            else:
                mask[i, torch.tensor(allowed, dtype=torch.long, device=scores.device)] = 0.0
            if row.capture_index is not None:
                index = row.capture_index
                lse = float(torch.logsumexp(scores[i] + mask[i], dim=-1))
                row.captured.append((scores[i, index].clone(), mask[i, index] == 0.0, lse))
        scores = scores + mask
        if self.generator is not None:
            scores = self._sample(scores)
        self.elapsed_s += time.perf_counter() - started
        return scores

    def _sample(self, scores: Any) -> Any:
        """Pick one token per row (temperature, top-p); returns scores that only allow it."""
        torch = self.torch
        key = self.key
        logits = scores / max(key.temperature, 1e-5)
        if key.top_p is not None and key.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True, dim=-1)
            ordered_probs = ordered.softmax(dim=-1)
            drop = ordered_probs.cumsum(dim=-1) - ordered_probs > key.top_p  # keep the token that crosses top_p
            ordered = ordered.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
        chosen = torch.multinomial(logits.softmax(dim=-1), 1, generator=self.generator)
        return torch.full_like(scores, float("-inf")).scatter(-1, chosen, 0.0)


def as_logits_processor(transformers: Any, processor: ConstrainedLogits) -> Any:
    """``processor`` as a ``LogitsProcessorList`` for ``generate(logits_processor=...)``."""

    class _Processor(transformers.LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return processor(input_ids, scores)

    return transformers.LogitsProcessorList([_Processor()])
