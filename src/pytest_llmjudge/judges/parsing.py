"""Tolerant extraction of a JSON object from a judge's reply, and score probabilities."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json_object(text: str) -> Any:
    """Return the first JSON object found in ``text``.

    Accepts a bare object, one inside a Markdown code fence, or one surrounded by prose.
    Raises ``ValueError`` when there is none.
    """
    stripped = text.strip()
    candidates = [stripped] + [match.group(1).strip() for match in _FENCE.finditer(stripped)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):  # a bare list or string is not the verdict object
            return value
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(stripped) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the reply contains no JSON object")


def score_distribution_from_top_logprobs(
    tokens: Sequence[str],
    top_logprobs: Sequence[Iterable[tuple[str, float]]],
    field: str,
    allowed: Sequence[int],
) -> dict[int, float] | None:
    """Probabilities of the allowed score values at the token that starts ``field``'s value.

    ``tokens`` are the generated tokens in order, ``top_logprobs[i]`` the (token, logprob)
    alternatives at position i. The score token is the first one after ``"field":`` whose text
    is a number. The probabilities are renormalized over ``allowed``; None when not found.
    """
    text = ""
    key = re.compile(r'"' + re.escape(field) + r'"\s*:\s*$')
    allowed_set = {str(v) for v in allowed}
    for i, token in enumerate(tokens):
        if key.search(text) and token.strip():
            probs: dict[int, float] = {}
            for alt, logprob in top_logprobs[i]:
                alt = alt.strip()
                if alt in allowed_set:
                    probs[int(alt)] = probs.get(int(alt), 0.0) + math.exp(logprob)
            total = sum(probs.values())
            if total <= 0:
                return None
            return {value: p / total for value, p in sorted(probs.items())}
        text += token
    return None
