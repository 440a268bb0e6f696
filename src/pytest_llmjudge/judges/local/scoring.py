"""The probability-weighted score: each allowed score value's probability at the step that wrote it.

For a request with ``score_field``, the pre-mask logits at the step that writes the score are
renormalized over the tokens that start an allowed score value. A multi-digit value (``10`` on a
0-10 scale, tokenized ``1`` ``0`` by most tokenizers) shares its first token with another value
(``1``): when the judge wrote that token, the next step splits its mass between "stop here"
(value ``1``: every other allowed token) and "continue" (``0`` -> ``10``); when it wrote a
different token the shared token's mass goes to the value it completes (``1``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .constraint import RowState

_WHITESPACE = " \t\n\r"


def score_vocab(token_strings: dict[int, str], values: Sequence[int]) -> list[int]:
    """Tokens that may write part of a score value (optionally after whitespace)."""
    texts = [str(v) for v in values]
    vocab = []
    for token, text in token_strings.items():
        core = text.lstrip(_WHITESPACE)
        if core and any(core in value for value in texts):
            vocab.append(token)
    return vocab


def score_distribution(
    text: str, tokens: Sequence[int], row: RowState, score_field: str, score_values: Sequence[int],
    token_strings: dict[int, str], decode: Callable[[list[int]], str],
) -> dict[int, float] | None:
    """Probability of each allowed score value, from the logits recorded at the score step (see the module doc)."""
    captured = row.captured
    position = top_level_value_position(text, score_field)
    if position is None:
        return None
    step = None
    for k in range(len(tokens) - 1, -1, -1):
        if len(decode(list(tokens[:k]))) <= position:
            step = k
            break
    if step is None or step >= len(captured):
        return None
    lead = text[len(decode(list(tokens[:step]))):position]
    if lead.strip(_WHITESPACE):
        return None  # the digit shares its token with punctuation: no clean distribution
    column = {token: i for i, token in enumerate(row.capture_ids)}
    values = [int(v) for v in score_values]
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
                        if token_strings.get(token) == piece and bool(allowed[index]):
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


def top_level_value_position(text: str, key: str) -> int | None:
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
