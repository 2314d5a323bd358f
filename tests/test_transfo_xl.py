"""Transformer-XL against the oracle (transformers' deprecated TransfoXL) on tiny random checkpoints.

The oracle has no generate(), so the LM is compared segment by segment: feed a segment, then the next one with the
returned `mems`, and so on, comparing log-probabilities, mems, hidden states and attentions at each step. Configs
cover adaptive softmax with clusters and div_val > 1 and = 1 (with and without projections), tied and untied
projections, shared and per-layer position biases, pre-norm, same_length, clamp_len and no memory at all.
"""
import warnings

import pytest
import torch
import transformers

import leanformers
from oracle import assert_close, max_diff, save_tiny

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

VOCAB = 53
CONFIGS = {
    # div_val > 1: every cluster its own table and projection; memory shorter than two segments
    "div2": dict(cutoffs=[10, 30], d_embed=32, div_val=2, mem_len=6, clamp_len=5, same_length=True),
    # div_val = 1 with d_embed != d_model: one table, projections tied to the input one (all but the first)
    "div1_projected": dict(cutoffs=[12], d_embed=24, div_val=1, mem_len=5, clamp_len=0, same_length=False),
    # div_val = 1, no projection, no clusters (a plain log-softmax); shared position biases; pre-norm
    "plain": dict(cutoffs=[], d_embed=32, div_val=1, mem_len=7, clamp_len=3, same_length=True, untie_r=False,
                  pre_lnorm=True),
    # untied projections, shared position biases, three tail clusters of shrinking width
    "div3_untied": dict(cutoffs=[8, 20, 40], d_embed=36, div_val=3, mem_len=4, clamp_len=100, same_length=False,
                        proj_share_all_but_first=False, untie_r=False),
    # no memory: every call starts from scratch (mems is None)
    "no_memory": dict(cutoffs=[15], d_embed=32, div_val=2, mem_len=0, clamp_len=0, same_length=False),
}
SEGMENTS = (5, 3, 1, 8)  # lengths fed one after the other, the last one longer than any memory


@pytest.fixture(autouse=True)
def oracle_type_as(monkeypatch):
    """The oracle calls `tensor.type_as(dtype=...)`, which this torch rejects; accept it while the tests run."""
    original = torch.Tensor.type_as

    def type_as(self, other=None, dtype=None):
        return self.to(dtype) if dtype is not None else original(self, other)

    monkeypatch.setattr(torch.Tensor, "type_as", type_as)


def _config(name, **overrides):
    settings = dict(vocab_size=VOCAB, d_model=32, n_head=4, d_head=8, d_inner=37, n_layer=2, eos_token_id=0,
                    **CONFIGS[name])
    settings.update(overrides)
    return transformers.TransfoXLConfig(**settings)


def _oracle(cls_name, name, **overrides):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(transformers, cls_name)(_config(name, **overrides)).eval()
    # LayerNorms start at exactly 1/0 and r_*_bias at random: perturb the norms so a swapped one would show
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.1)
                module.bias.normal_(0.0, 0.1)
            if hasattr(module, "cluster_bias") and module.cluster_bias is not None:
                module.cluster_bias.normal_(0.0, 0.5)
    return model


def _segments(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (batch, n), generator=g) for n in SEGMENTS]


def _save(theirs, folder, safe=True):
    """save_pretrained; with untie_r=False transformers refuses safetensors (the position biases are shared), so
    write it as safetensors' own save_model does: each shared tensor once, under one of its names."""
    if safe and not theirs.config.untie_r:
        from safetensors.torch import save_model

        folder.mkdir()
        theirs.config.save_pretrained(folder)
        save_model(theirs, str(folder / "model.safetensors"))
        return str(folder)
    return save_tiny(theirs, folder, safe=safe)


def _clean(model):
    info = model.loading_info
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_lm_segment_by_segment(name, safe, tmp_path):
    theirs = _oracle("TransfoXLLMHeadModel", name)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(_save(theirs, tmp_path / "ckpt", safe=safe))
    assert type(ours).__name__ == "TransfoXLLMHeadModel"
    _clean(ours)
    their_mems = our_mems = None
    with torch.no_grad():
        for step, ids in enumerate(_segments()):
            extra = dict(output_hidden_states=True, output_attentions=True) if step == 1 else {}
            a = theirs(ids, mems=their_mems, **extra)
            b = ours(ids, mems=our_mems, **extra)
            assert_close(a, b, keys=["prediction_scores"], what=f"{name} segment {step}")
            assert max_diff(a.logits, b.logits) <= 1e-4
            if CONFIGS[name]["mem_len"]:
                assert len(a.mems) == len(b.mems)
                for layer, (x, y) in enumerate(zip(a.mems, b.mems)):
                    assert x.shape == y.shape and max_diff(x, y) <= 1e-4, f"{name} segment {step} mems {layer}"
            else:
                assert a.mems is None and b.mems is None
            for key in extra and ("hidden_states", "attentions"):  # only where they were asked for
                assert len(a[key]) == len(b[key]) > 0
                for x, y in zip(a[key], b[key]):
                    assert x.shape == y.shape and max_diff(x, y) <= 1e-4, f"{name} {key}"
            their_mems, our_mems = a.mems, b.mems


@pytest.mark.parametrize("name", ["div2", "plain", "div1_projected"])
def test_lm_losses_and_tuple_output(name, tmp_path):
    theirs = _oracle("TransfoXLLMHeadModel", name)
    ours = leanformers.TransfoXLLMHeadModel.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    ids = _segments()[0]
    labels = ids.clone()
    labels[1, 2] = -100  # ignored positions land last in transformers' (cluster-ordered) losses
    with torch.no_grad():
        a = theirs(ids, labels=labels.clone())
        b = ours(ids, labels=labels)
        assert_close(a, b, keys=["losses", "loss"], what=name)
        only_first = torch.full_like(ids, -100)  # no valid label: transformers puts eos at [0, 1]
        assert_close(theirs(ids, labels=only_first.clone()), ours(ids, labels=only_first), keys=["losses", "loss"])
        a, b = theirs(ids, return_dict=False), ours(ids, return_dict=False)
        assert len(a) == len(b) and max_diff(a[0], b[0]) <= 1e-4  # (prediction_scores, mems)
        a, b = theirs(ids, labels=labels.clone(), return_dict=False), ours(ids, labels=labels, return_dict=False)
    assert len(a) == len(b) == 4 and a[1] == b[1] == ()  # (losses, (), mems, loss)
    assert max_diff(a[0], b[0]) <= 1e-4 and max_diff(a[3], b[3]) <= 1e-4


@pytest.mark.parametrize("name", ["div2", "div3_untied"])
def test_base_model(name, tmp_path):
    lm = _oracle("TransfoXLLMHeadModel", name)
    from_lm = leanformers.AutoModel.from_pretrained(_save(lm, tmp_path / "lm"))
    assert type(from_lm).__name__ == "TransfoXLModel"
    assert from_lm.loading_info["unexpected_keys"]  # the adaptive softmax has no place in the base model
    base = _oracle("TransfoXLModel", name)
    ours = leanformers.TransfoXLModel.from_pretrained(_save(base, tmp_path / "base", safe=False))
    _clean(ours)
    for theirs, mine in ((lm.transformer, from_lm), (base, ours)):
        their_mems = our_mems = None
        with torch.no_grad():
            for ids in _segments()[:3]:
                a, b = theirs(ids, mems=their_mems), mine(ids, mems=our_mems)
                assert_close(a, b, keys=["last_hidden_state"])
                assert all(max_diff(x, y) <= 1e-4 for x, y in zip(a.mems, b.mems))
                their_mems, our_mems = a.mems, b.mems


def test_inputs_embeds_and_head_mask(tmp_path):
    theirs = _oracle("TransfoXLModel", "div2")
    ours = leanformers.TransfoXLModel.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    ids = _segments()[0]
    embeds = torch.randn(*ids.shape, 32, generator=torch.Generator().manual_seed(1))
    head_mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.5]])
    with torch.no_grad():
        assert_close(theirs(inputs_embeds=embeds), ours(inputs_embeds=embeds), keys=["last_hidden_state"])
        a = theirs(ids, head_mask=head_mask, output_attentions=True)
        b = ours(ids, head_mask=head_mask, output_attentions=True)
    assert_close(a, b, keys=["last_hidden_state"])
    assert all(max_diff(x, y) <= 1e-4 for x, y in zip(a.attentions, b.attentions))


def test_sequence_classification(tmp_path):
    theirs = _oracle("TransfoXLForSequenceClassification", "div2", num_labels=3, pad_token_id=1)
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    assert type(ours).__name__ == "TransfoXLForSequenceClassification"
    _clean(ours)
    ids = _segments(batch=3)[3].clamp(min=2)
    ids[1, 5:] = 1  # right padding: the last real token is read
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        a, b = theirs(ids, labels=labels), ours(ids, labels=labels)
        assert_close(a, b, keys=["logits", "loss"])
        assert all(max_diff(x, y) <= 1e-4 for x, y in zip(a.mems, b.mems))


def test_tied_weights_share_storage(tmp_path):
    for name, tied_projections in (("div2", [1, 2]), ("div1_projected", [1]), ("div3_untied", [])):
        theirs = _oracle("TransfoXLLMHeadModel", name)
        ours = leanformers.TransfoXLLMHeadModel.from_pretrained(_save(theirs, tmp_path / name))
        for i, layer in enumerate(ours.head.decoder):
            assert layer.weight is ours.model.embeddings.word[i].weight
        source = ours.model.embeddings.projections
        for i, projection in enumerate(ours.head.projections):
            shared = projection is source[0 if len(source) == 1 else i]
            assert shared == (i in tied_projections), f"{name} projection {i}"


def _oracle_greedy(theirs, ids, steps, feed_all=False):
    """Greedy continuation with the oracle, one token per call with mems (or the whole sequence without)."""
    sequence, mems = ids, None
    with torch.no_grad():
        out = theirs(ids)
        for _ in range(steps):
            token = out.prediction_scores[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, token], dim=1)
            mems = out.mems
            out = theirs(sequence) if feed_all else theirs(token, mems=mems)
    return sequence


@pytest.mark.parametrize("name", ["div2", "no_memory"])
def test_generate_greedy_uses_mems(name, tmp_path):
    theirs = _oracle("TransfoXLLMHeadModel", name)
    ours = leanformers.AutoModelForCausalLM.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    ids = _segments()[0]
    expected = _oracle_greedy(theirs, ids, 8, feed_all=not CONFIGS[name]["mem_len"])
    unused = next(t for t in range(VOCAB) if t not in expected)  # an eos that never stops the comparison early
    got = ours.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=unused, pad_token_id=unused)
    assert torch.equal(got, expected)


def test_generate_beam_search_reorders_mems(tmp_path):
    theirs = _oracle("TransfoXLLMHeadModel", "div2")
    ours = leanformers.AutoModelForCausalLM.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    mems = [torch.randn(6, 4, 32) for _ in range(2)]
    beam_idx = torch.tensor([2, 2, 0, 1])
    for x, y in zip(transformers.TransfoXLLMHeadModel._reorder_cache(mems, beam_idx),
                    ours._reorder_cache(mems, beam_idx)):
        assert torch.equal(x, y)
    out = ours.generate(_segments()[0], max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False,
                        eos_token_id=VOCAB + 1, pad_token_id=VOCAB + 1, return_dict_in_generate=True,
                        output_scores=True)
    assert out.sequences.shape == (4, 9)
    assert len(out.past_key_values) == 2 and out.past_key_values[0].shape == (6, 6, 32)  # (mem_len, 2 * 3 beams, d)


def test_bad_input_is_named(tmp_path):
    theirs = _oracle("TransfoXLLMHeadModel", "div2")
    ours = leanformers.TransfoXLLMHeadModel.from_pretrained(_save(theirs, tmp_path / "ckpt"))
    ids = _segments()[0]
    with pytest.raises(ValueError, match="padding"):
        ours(ids, attention_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]))
    ours(ids, attention_mask=torch.ones_like(ids))  # a mask that masks nothing is fine
    with pytest.raises(ValueError, match="mems must be 2 tensors"):
        ours(ids, mems=[torch.zeros(6, 3, 32)] * 2)
    with pytest.raises(ValueError, match="vocab_size=53"):
        ours(torch.tensor([[1, 53]]))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours()
    with pytest.raises(TypeError, match="cannot generate"):
        leanformers.TransfoXLModel.from_pretrained(_save(theirs, tmp_path / "lm")).generate(ids)
    with pytest.raises(NotImplementedError, match="attn_type=1"):
        leanformers.TransfoXLModel.from_config(dict(_config("div2").to_dict(), attn_type=1))
