"""CPU decode kernels (local_kernels.py) and the torch thread (torch_thread.py), on small tensors."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import pytest

from pytest_llmjudge.torch_thread import run_on_torch_thread

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None,
    reason="needs pip install '.[local]'",
)


# ---- the torch thread


def test_every_caller_runs_on_one_thread() -> None:
    seen: list[str] = []

    def where() -> str:
        return threading.current_thread().name

    threads = [threading.Thread(target=lambda: seen.append(run_on_torch_thread(where))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen.append(run_on_torch_thread(where))
    assert set(seen) == {"llmjudge-torch"}


def test_errors_reach_the_caller_and_nested_calls_run_inline() -> None:
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_on_torch_thread(fail)
    assert run_on_torch_thread(lambda: run_on_torch_thread(lambda x: x + 1, 1)) == 2


# ---- kernels


@needs_torch
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 16, 17, 40])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reordered", [True, False], ids=["reordered", "too-big-to-copy"])
def test_small_batch_linear_matches_linear(rows: int, bias: bool, reordered: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from pytest_llmjudge.judges import local_kernels
    from pytest_llmjudge.judges.local_kernels import restore_linear, use_small_batch_linear

    if not reordered:
        monkeypatch.setattr(local_kernels, "PACKED_MAX_BYTES", 0)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96, bias=bias), torch.nn.Linear(96, 8, bias=bias))
    x = torch.randn(rows, 3, 64)[:, -1:, :]  # decode shape (rows, 1, features), not contiguous
    expected = model(x)
    assert use_small_batch_linear(model, torch) == 2
    got = model(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    restore_linear(model)
    assert "forward" not in model[0].__dict__


@needs_torch
def test_batched_linear_follows_a_changed_weight() -> None:
    """The reordered copy behind the 3+ row path is remade when the weight changes."""
    import torch

    from pytest_llmjudge.judges.local_kernels import use_small_batch_linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 48)
    use_small_batch_linear(layer, torch)
    x = torch.randn(6, 1, 32)
    with torch.no_grad():
        layer(x)  # reorders the weight
        layer.weight.mul_(2.0)
        expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@needs_torch
def test_growing_cache_equals_concatenation() -> None:
    import torch
    import transformers

    from pytest_llmjudge.judges.local_kernels import growing_cache

    torch.manual_seed(0)
    cache = growing_cache(transformers)
    reference: list[Any] = []
    for step, length in enumerate([5, 1, 1, 70, 1]):  # 70 outgrows the spare room
        keys, values = torch.randn(2, 3, length, 4), torch.randn(2, 3, length, 4)
        got_keys, got_values = cache.update(keys, values, 0)
        reference = [keys, values] if step == 0 else [torch.cat([reference[0], keys], -2),
                                                      torch.cat([reference[1], values], -2)]
        assert torch.equal(got_keys, reference[0]) and torch.equal(got_values, reference[1])
        if step == 2:  # code outside the cache replaces the tensors (row selection): still right
            layer = cache.layers[0]
            layer.keys, layer.values = layer.keys[[1, 0]], layer.values[[1, 0]]
            reference = [reference[0][[1, 0]], reference[1][[1, 0]]]
    assert cache.get_seq_length() == 78


@needs_torch
def test_gqa_attention_matches_sdpa() -> None:
    import torch
    import transformers

    from pytest_llmjudge.judges.local_kernels import use_gqa_attention

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")
    ids = torch.randint(0, 64, (3, 10))
    attention = torch.ones_like(ids)
    attention[0, :4] = 0  # left padding
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=attention).logits
        assert use_gqa_attention(model, torch, transformers)
        got = model(input_ids=ids, attention_mask=attention).logits
    torch.testing.assert_close(got[:, 4:], expected[:, 4:], rtol=1e-4, atol=1e-5)
