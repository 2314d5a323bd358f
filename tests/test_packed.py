"""Packed fp32 linears (modeling/packed.py): the same numbers as nn.Linear, used by generate() when a step has rows
enough to pay, and never in the way of training, other dtypes or a changed weight."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, MarianConfig, MarianMTModel

from leanformers.modeling import packed
from leanformers.modeling.auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM
from oracle import assert_generate_equal, random_inputs

pytestmark = pytest.mark.skipif(not packed.available(), reason="this torch has no MKL packed GEMM")


def _linear(inputs=96, outputs=80, bias=True):
    torch.manual_seed(0)
    layer = nn.Linear(inputs, outputs, bias=bias)
    packed.enable(nn.Sequential(layer))
    return layer


@pytest.mark.parametrize("bias", [True, False])
def test_packed_rows_equal_linear(bias):
    """17-256 rows: bitwise F.linear; 4-16 rows: F.linear's small-matrix kernel rounds differently (~1e-7)."""
    layer = _linear(bias=bias)
    assert isinstance(layer, packed.PackedLinear)
    with torch.inference_mode():
        for rows in (4, 7, 16, 17, 64, 256):
            x = torch.randn(rows, 96)
            expected = F.linear(x, layer.weight, layer.bias)
            got = layer(x)
            assert layer.packed is not None
            if rows >= 17:
                assert torch.equal(got, expected), rows
            else:
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        x = torch.randn(2, 8, 96)  # leading dims are rows too
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-6, atol=1e-6)


def test_unpacked_cases_take_plain_linear(monkeypatch):
    """1-3 or > 256 rows, autograd, other dtypes: F.linear itself (the packed copy is never made)."""
    layer = _linear()
    calls = []
    monkeypatch.setattr(torch.ops.mkl, "_mkl_linear", lambda *a: calls.append(a))
    with torch.inference_mode():
        for rows in (1, 3, 257):
            layer(torch.randn(rows, 96))
        layer.to(torch.bfloat16)(torch.randn(8, 96, dtype=torch.bfloat16))
    layer.float()
    out = layer(torch.randn(8, 96))  # grad enabled, weight requires grad: training must see the real weight
    out.sum().backward()
    assert layer.weight.grad is not None and not calls and layer.packed is None


def test_weight_changed_after_packing_is_packed_again():
    layer = _linear()
    x = torch.randn(32, 96)
    with torch.inference_mode():
        layer(x)
    with torch.no_grad():
        layer.weight.mul_(2)
    with torch.inference_mode():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_enable_keeps_parameters_and_disable_restores():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    keys = list(model.state_dict())
    assert packed.enable(model) == 2 and list(model.state_dict()) == keys
    with torch.inference_mode():
        model(torch.randn(5, 8))
    packed.disable(model)
    assert all(type(m) is nn.Linear for m in model if isinstance(m, nn.Linear)) and "packed" not in model[0].__dict__


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("LEANFORMERS_PACKED_LINEAR", "0")
    model = nn.Sequential(nn.Linear(8, 8))
    assert packed.enable(model) == 0 and type(model[0]) is nn.Linear


def _packed_count(model):
    return sum(isinstance(m, packed.PackedLinear) and m.packed is not None for m in model.modules())


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=1, eos_token_id=2)).eval()
    torch.manual_seed(0)
    marian = MarianMTModel(MarianConfig(vocab_size=64, d_model=64, encoder_layers=2, decoder_layers=2,
                                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                                        decoder_ffn_dim=128, max_position_embeddings=64, pad_token_id=63,
                                        decoder_start_token_id=63, eos_token_id=0)).eval()
    folders = {}
    for name, model in (("gpt2", gpt2), ("marian", marian)):
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return {"gpt2": (gpt2, AutoModelForCausalLM.from_pretrained(folders["gpt2"])),
            "marian": (marian, AutoModelForSeq2SeqLM.from_pretrained(folders["marian"]))}


def test_generate_packs_for_batches_and_matches_oracle(pair):
    """Batch 4 greedy and batch 2 x 4 beams run packed (decode rows >= 4) with the oracle's ids; batch 1 greedy
    (one row a step) packs nothing."""
    theirs, ours = pair["gpt2"]
    ids, mask = random_inputs(64, batch=1, length=6, special=(0, 1, 2))
    assert_generate_equal(theirs, ours, ids, mask, max_new_tokens=8, do_sample=False)
    assert _packed_count(ours) == 0
    ids, mask = random_inputs(64, batch=4, length=7, pad_right=False, special=(0, 1, 2))
    assert_generate_equal(theirs, ours, ids, mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert _packed_count(ours) == sum(isinstance(m, nn.Linear) for m in ours.modules()) > 0
    theirs, ours = pair["marian"]
    ids, mask = random_inputs(63, batch=2, length=9, special=(0,))
    assert_generate_equal(theirs, ours, ids, mask, max_new_tokens=10, num_beams=4, no_repeat_ngram_size=3)
    assert _packed_count(ours) > 0


def test_beam_buffers_reused_only_when_nobody_keeps_them(pair):
    """Beam search reuses its log-softmax buffer and the cache's spare buffers across steps; a caller's own
    processor, which may keep the scores it sees, gets a fresh tensor each step; ids stay the oracle's."""
    theirs, ours = pair["marian"]
    ids, mask = random_inputs(63, batch=2, length=9, special=(0,))
    seen = []

    def keep(input_ids, scores):
        seen.append(scores)
        return scores

    expected = theirs.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3)
    got = ours.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3, logits_processor=[keep])
    assert torch.equal(got, expected)
    assert len({t.data_ptr() for t in seen}) == len(seen) > 1


def test_cache_reorder_moves_only_rows_from_other_rows():
    """reorder_cache in place: rows whose beam stays put are not copied; the result is a gather of every row."""
    from leanformers.modeling.cache import KVCache

    cache = KVCache(2)
    for layer in range(2):
        cache.update(layer, torch.randn(6, 2, 5, 4), torch.randn(6, 2, 5, 4))
    before = [(k.clone(), v.clone()) for k, v in (cache.update(i, torch.randn(6, 2, 1, 4), torch.randn(6, 2, 1, 4))
                                                 for i in range(2))]
    buffers = [k.data_ptr() for k in cache._keys]
    rows = torch.tensor([0, 0, 2, 1, 4, 4])
    cache.reorder_cache(rows)
    assert [k.data_ptr() for k in cache._keys] == buffers
    for i, (k, v) in enumerate(before):
        used = cache.get_seq_length(i)
        assert torch.equal(cache._keys[i][:, :, :used], k[rows]) and torch.equal(cache._values[i][:, :, :used], v[rows])


def test_packed_models_deepcopy_and_save():
    """The packed copy is opaque (no storage): deepcopy and torch.save leave it out and the copy packs again."""
    import copy
    import io

    layer = _linear()
    x = torch.randn(8, 96)
    with torch.inference_mode():
        expected = layer(x)
    assert layer.packed is not None
    clone = copy.deepcopy(layer)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.inference_mode():
        assert torch.equal(clone(x), expected) and torch.equal(loaded(x), expected)
    assert clone.packed is not None and layer.packed is not None


def test_decode_rows_counts_prompts_times_beams(pair):
    from leanformers.generation import GenerationConfig
    from leanformers.modeling.outputs import ModelOutput

    _, ours = pair["marian"]
    ids = torch.zeros(3, 5, dtype=torch.long)
    assert ours.decode_rows(ids) == 3 * (ours.generation_config.num_beams or 1)
    assert ours.decode_rows(ids, num_beams=4) == 12
    assert ours.decode_rows(input_ids=ids, num_beams=2, num_return_sequences=2) == 6
    assert ours.decode_rows(inputs=ids, generation_config=GenerationConfig(num_beams=5)) == 15
    encoder_outputs = ModelOutput(last_hidden_state=torch.zeros(2, 5, 64))
    assert ours.decode_rows(encoder_outputs=encoder_outputs, num_beams=3) == 6
