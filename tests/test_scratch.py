"""The MLP's scratch path (modeling/layers.py): many-row inference writes the inner activations into a reused
per-thread buffer, with bitwise the numbers of the plain path, and stays out of the way of autograd and hooks."""
from __future__ import annotations

import threading

import pytest
import torch

from leanformers.modeling import layers
from leanformers.modeling.layers import MLP


def _plain(mlp, x):
    inner = mlp.act(mlp.gate(x)) * mlp.up(x) if mlp.gate is not None else mlp.act(mlp.up(x))
    return mlp.down(inner)


@pytest.mark.parametrize("act", sorted(layers.INPLACE_ACTIVATIONS))
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_scratch_path_is_bitwise_the_plain_path(act, gated, bias):
    torch.manual_seed(0)
    mlp = MLP(32, 80, act, gated=gated, bias=bias)
    x = torch.randn(3, layers.SCRATCH_ROWS // 3 + 5, 32)
    with torch.inference_mode():
        layers.release_scratch()
        got = mlp(x)
        assert layers._SCRATCH.buffer is not None, "the scratch path was not taken"
        assert torch.equal(got, _plain(mlp, x))
        again = mlp(x * 2)  # the buffer is reused: the first result must not change
        assert torch.equal(got, _plain(mlp, x)) and torch.equal(again, _plain(mlp, x * 2))


def test_plain_path_for_few_rows_autograd_and_hooks():
    torch.manual_seed(0)
    mlp = MLP(16, 32, "gelu")
    many = torch.randn(layers.SCRATCH_ROWS, 16)
    with torch.inference_mode():
        layers.release_scratch()
        mlp(many[:4])
    assert layers._SCRATCH.buffer is None
    out = mlp(many)  # grad enabled: autograd needs the activations kept
    out.sum().backward()
    assert layers._SCRATCH.buffer is None and mlp.up.weight.grad is not None
    seen = []
    handle = mlp.down.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.inference_mode():
        mlp(many)
        mlp(many * 3)
    handle.remove()
    assert layers._SCRATCH.buffer is None and not torch.equal(seen[0], seen[1])


def test_each_thread_has_its_own_scratch():
    torch.manual_seed(0)
    mlp = MLP(16, 32, "relu")
    inputs = [torch.randn(layers.SCRATCH_ROWS + 1, 16) for _ in range(4)]
    expected = [_plain(mlp, x).detach() for x in inputs]
    results, buffers = {}, {}
    all_hold_theirs = threading.Barrier(4)

    def work(i):
        with torch.inference_mode():
            for _ in range(20):
                results[i] = mlp(inputs[i])
            buffers[i] = layers._SCRATCH.buffer.data_ptr()
            all_hold_theirs.wait()  # no thread exits (freeing its buffer) before all have recorded theirs

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(results[i], expected[i]) for i in range(4))
    assert len(set(buffers.values())) == 4


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_inference_paths_give_the_training_paths_numbers(model_type):
    """A whole model under inference_mode (scratch MLPs, residuals added into the sublayer's output) gives bitwise
    what the same model computes with autograd on (fresh tensors everywhere)."""
    from leanformers import AutoModel
    from leanformers.config import Config

    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=99)
    config = Config.from_dict({"model_type": model_type, **sizes})
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()  # from_config returns train() mode (dropout on), as transformers
    ids = torch.randint(0, 99, (4, 70))
    mask = torch.ones_like(ids)
    mask[1, 50:] = 0
    with torch.enable_grad():
        training = model(input_ids=ids, attention_mask=mask).last_hidden_state.detach()
    with torch.inference_mode():
        layers.release_scratch()
        inference = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert layers._SCRATCH.buffer is not None
    assert torch.equal(training, inference)
