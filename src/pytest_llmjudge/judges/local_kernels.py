"""CPU speed-ups for the local judge's model (decoding and prompts), applied after it is loaded.

Each changes how a product is computed, never what: outputs match the stock path to float
rounding (tests compare batched and sequential verdicts).

**Linear layers.** Decoding multiplies every weight matrix by a handful of rows (one per
sequence in the batch). ``torch.nn.functional.linear`` computes that as ``x @ W.T``, and on
CPU (MKL) that product is slow for a few rows: measured here on SmolLM2-135M's weights (2 cores,
float32), one decode step's linear layers take 50 ms for 1 row and 61 ms for 8, while the same
products written as ``W @ x.T`` take 19 ms for 2 rows and 45 ms for 8 (and one row is fastest
sent as two). From 3 rows on, oneDNN with the weight reordered once into its blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``, what torch's CPU compiler uses) is faster still,
for decoding and prefill alike: 25 ms for 8 rows against 41 ms for ``W @ x.T``, 20 ms for 4
rows against 25, 95 ms for a 60-token prompt against 169 ms with ``F.linear``. The reordered
copy is made on the first call with 3+ rows: one more copy of the linear weights in memory
(SmolLM2-135M: about 0.5 GB), so models whose linear weights pass ``PACKED_MAX_BYTES`` keep
the plain paths.

**Attention.** Models with grouped-query attention (SmolLM2: 9 query heads share 3 key/value
heads) get their key/value heads copied 3x per layer per step by transformers' SDPA path whenever
an attention mask is present, which a padded batch always has. ``scaled_dot_product_attention``
takes ``enable_gqa=True`` instead (torch >= 2.5): same result, no copy.

**Key/value cache.** transformers' ``DynamicCache`` appends each step's keys and values with
``torch.cat``, copying the whole cache every step (15 ms of an 80 ms batch-8 step here).
:func:`growing_cache` keeps spare room and writes new positions in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

#: up to this many rows a linear layer without the reordered copy uses ``W @ x.T``, beyond F.linear
SMALL_ROWS = 16
#: from this many rows on, a linear layer uses oneDNN with a reordered copy of its weight
PACKED_ROWS = 3
#: models with more float32 linear weight than this (bytes) get no reordered copies (memory)
PACKED_MAX_BYTES = 2 << 30


def use_small_batch_linear(model: Any, torch: Any) -> int:
    """On CPU, give the model's ``nn.Linear`` layers the faster paths above; returns how many."""
    if str(getattr(model, "device", "cpu")) != "cpu":
        return 0  # cuBLAS needs no help
    layers = [m for m in model.modules() if type(m) is torch.nn.Linear]
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    onednn = _onednn_linear(torch) if weight_bytes <= PACKED_MAX_BYTES else None
    for module in layers:
        module.forward = _bound_linear(module, torch, onednn)
    return len(layers)


def restore_linear(model: Any) -> None:
    """Undo :func:`use_small_batch_linear` (benchmarks compare both)."""
    for module in model.modules():
        module.__dict__.pop("forward", None)


class _OneDNN(NamedTuple):
    """oneDNN's linear on a reordered weight (torch's private mkldnn ops)."""

    reorder: Callable[[Any], Any]  # weight -> its reordered copy
    run: Callable[[Any, Any, Any], Any]  # (rows, reordered copy, bias) -> output


def _onednn_linear(torch: Any) -> _OneDNN | None:
    """The oneDNN linear ops, or None where this torch lacks them."""
    ops = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or ops is None:
        return None
    try:
        reorder, linear = ops._reorder_linear_weight, ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    return _OneDNN(reorder=lambda weight: reorder(weight, 8),
                   run=lambda x, reordered, bias: linear(x, reordered, bias, "none", [], ""))


def _bound_linear(module: Any, torch: Any, onednn: _OneDNN | None) -> Any:
    weight_ref = module  # read .weight at call time: tied or reloaded weights stay current
    linear, mm, cat = torch.nn.functional.linear, torch.mm, torch.cat
    copied_from: tuple[Any, int] | None = None  # (weight, its version) behind ``copy``
    copy: Any = None  # the reordered weight, made on the first 3+ row call

    def reordered(weight: Any) -> Any:
        nonlocal copied_from, copy
        if copied_from is None or copied_from[0] is not weight or copied_from[1] != weight._version:
            copied_from, copy = (weight, weight._version), onednn.reorder(weight.detach())
        return copy

    def forward(x: Any) -> Any:
        weight, bias = weight_ref.weight, weight_ref.bias
        features = x.shape[-1]
        rows = x.numel() // features if features else 0
        if rows == 0 or x.dtype != weight.dtype:
            return linear(x, weight, bias)
        flat = x.reshape(rows, features)
        if rows >= PACKED_ROWS and onednn is not None and weight.dtype == torch.float32:
            out = onednn.run(flat.contiguous(), reordered(weight), bias)
            return out.reshape(*x.shape[:-1], weight.shape[0])
        if rows > SMALL_ROWS:
            return linear(x, weight, bias)
        if rows == 1:
            out = mm(weight, cat([flat, flat]).t())[:, :1]
        else:
            out = mm(weight, flat.t())
        out = out.t().contiguous()
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    return forward


ATTENTION_NAME = "llmjudge_sdpa_gqa"


def use_gqa_attention(model: Any, torch: Any, transformers: Any) -> bool:
    """Give a grouped-query model SDPA attention that never repeats key/value heads."""
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None)
    if str(getattr(model, "device", "cpu")) != "cpu" or not heads or not kv_heads or heads == kv_heads:
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                  dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                  **kwargs: Any) -> tuple[Any, None]:
        if attention_mask is not None and attention_mask.ndim == 4:
            attention_mask = attention_mask[:, :, :, : key.shape[-2]]
        if is_causal is None:
            is_causal = query.shape[2] > 1 and attention_mask is None and getattr(module, "is_causal", True)
        out = sdpa(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
                   is_causal=is_causal, enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register(ATTENTION_NAME, attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    model.set_attn_implementation(ATTENTION_NAME)
    return True


_layer_class: list[type] = []


def growing_cache(transformers: Any) -> Any:
    """A ``DynamicCache`` whose layers append into spare capacity instead of re-concatenating."""
    cache = transformers.DynamicCache()
    if not _layer_class:
        _layer_class.append(_make_growing_layer(transformers.cache_utils.DynamicLayer))
    if getattr(cache, "layer_class_to_replicate", None) is transformers.cache_utils.DynamicLayer and not cache.layers:
        cache.layer_class_to_replicate = _layer_class[0]
    return cache


def _make_growing_layer(base: type) -> type:
    class GrowingLayer(base):  # type: ignore[misc, valid-type]
        """A DynamicLayer with spare room: ``keys``/``values`` are views into larger buffers.

        Code that assigns ``keys``/``values`` (row selection, padding) replaces the views; the
        next append notices and copies them into fresh buffers once.
        """

        _spare = 64
        _key_buf: Any = None
        _value_buf: Any = None
        _views: tuple[Any, Any] | None = None  # the (keys, values) views last handed out

        def update(self, key_states: Any, value_states: Any, cache_kwargs: Any = None) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states)
            keys, values = self.keys, self.values
            held = keys.shape[-2] if keys.ndim == 4 else 0
            new = key_states.shape[-2]
            replaced = self._views is None or keys is not self._views[0] or values is not self._views[1]
            if replaced or held + new > self._key_buf.shape[-2]:
                capacity = held + new + max(self._spare, (held + new) // 2)
                self._key_buf = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[-1]))
                self._value_buf = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[-1]))
                if held:
                    self._key_buf[:, :, :held] = keys
                    self._value_buf[:, :, :held] = values
            self._key_buf[:, :, held:held + new] = key_states
            self._value_buf[:, :, held:held + new] = value_states
            self.keys = self._key_buf[:, :, :held + new]
            self.values = self._value_buf[:, :, :held + new]
            self._views = (self.keys, self.values)
            return self.keys, self.values

    return GrowingLayer
