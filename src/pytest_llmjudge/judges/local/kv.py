"""Key/value cache operations for the decode loop, on transformers' public ``DynamicCache`` API only.

Used in transformers 4.57 and 5.x alike: iterating a cache yields each layer's ``(keys, values,
...)``; ``DynamicCache(ddp_cache_data)`` builds a cache from per-layer tensors; the cache's own
``batch_select_indices`` and ``batch_repeat_interleave`` drop or repeat batch rows. (``crop``
is avoided: its argument changed meaning in 5.x, from the length kept to the tokens removed.)
Tensors are ``(rows, kv_heads, positions, head_dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: per layer: (keys, values)
Layers = list[tuple[Any, Any]]


def layers_of(cache: Any) -> Layers:
    """Each layer's (keys, values) tensors."""
    return [(item[0], item[1]) for item in cache]


def build(transformers: Any, layers: Layers) -> Any:
    """A ``DynamicCache`` holding ``layers`` (copied in)."""
    return transformers.DynamicCache(layers)


def positions(cache: Any) -> int:
    """How many positions (columns) the cache holds."""
    first = next(iter(cache), None)
    return 0 if first is None else int(first[0].shape[-2])


def select_rows(cache: Any, index: Any) -> None:
    """Keep only the batch rows ``index`` (in place)."""
    cache.batch_select_indices(index)


def repeat_rows(cache: Any, count: int) -> None:
    """Repeat a one-row cache ``count`` times (in place)."""
    if count > 1:
        cache.batch_repeat_interleave(count)


def head(layers: Layers, length: int) -> Layers:
    """Copies of the first ``length`` positions of row 0 (a remembered prompt head)."""
    return [(k[:1, :, :length].clone(), v[:1, :, :length].clone()) for k, v in layers]


def first_positions(layers: Layers, length: int) -> Layers:
    """Views of the first ``length`` positions (``build`` copies them)."""
    return [(k[:, :, :length], v[:, :, :length]) for k, v in layers]


def keep_columns(torch: Any, transformers: Any, cache: Any, columns: Any) -> Any:
    """A new cache with only the positions ``columns`` (an index tensor)."""
    return build(transformers, [(torch.index_select(k, 2, columns), torch.index_select(v, 2, columns))
                                for k, v in layers_of(cache)])


def merge(torch: Any, transformers: Any, caches: Sequence[Any], masks: Sequence[Any]) -> tuple[Any, Any]:
    """One cache (and 2-D attention mask) from several batches, each left-padded to the longest."""
    length = max(int(m.shape[1]) for m in masks)
    pad = torch.nn.functional.pad
    per_cache = [layers_of(c) for c in caches]
    merged: Layers = []
    for layer in zip(*per_cache):
        keys = [pad(k, (0, 0, length - k.shape[2], 0)) for k, _ in layer]
        values = [pad(v, (0, 0, length - v.shape[2], 0)) for _, v in layer]
        merged.append((torch.cat(keys), torch.cat(values)))
    mask = torch.cat([pad(m, (length - m.shape[1], 0)) for m in masks])
    return build(transformers, merged), mask
