"""ProphetNet against the oracle on tiny random checkpoints (safetensors and .bin): logits and logits_ngram of padded
mixed-length batches, the base model's two streams, the cache path, the n-gram loss, hidden states, greedy and beam
ids of generate(), and clear errors."""
import logging

import pytest
import torch
import transformers
from transformers.modeling_outputs import BaseModelOutput

import leanformers
from oracle import (SEQ2SEQ_GENERATION, assert_close, assert_generate_equal, max_diff, random_inputs,
                    save_tiny)

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 99
# init larger than transformers' 0.02 so that a wrong op shows in the logits, not only in the 7th digit
TINY = dict(vocab_size=VOCAB, hidden_size=32, encoder_ffn_dim=37, num_encoder_layers=2, num_encoder_attention_heads=4,
            decoder_ffn_dim=41, num_decoder_layers=2, num_decoder_attention_heads=2, max_position_embeddings=64,
            ngram=2, num_buckets=8, relative_max_distance=20, init_std=0.1)
CASES = {"ngram2": {}, "ngram3-untied": dict(ngram=3, tie_word_embeddings=False), "ngram1": dict(ngram=1)}
HEADS = {"lm": "ProphetNetForConditionalGeneration", "base": "ProphetNetModel"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    made = {}

    def get(case="ngram2", head="lm", safe=True, **overrides):
        key = (case, head, safe, tuple(sorted(overrides.items())))
        if key not in made:
            torch.manual_seed(0)
            config = transformers.ProphetNetConfig(**{**TINY, **CASES[case], **overrides})
            model = getattr(transformers, HEADS[head])(config).eval()
            made[key] = model, save_tiny(model, tmp_path_factory.mktemp("prophetnet"), safe=safe)
        return made[key]

    return get


def _inputs(batch=3, length=9, decoder_length=7):
    """Encoder ids right-padded (pad 0) to mixed lengths; decoder ids with a right-padded decoder mask."""
    ids, mask = random_inputs(VOCAB, batch, length, special=(3,))
    ids = ids.masked_fill(mask == 0, 0)
    decoder_ids, decoder_mask = random_inputs(VOCAB, batch, decoder_length, seed=1, special=(3,))
    return ids, mask, decoder_ids, decoder_mask


def _run(model, ids, mask, decoder_ids, decoder_mask=None, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids,
                     decoder_attention_mask=decoder_mask, **kwargs)


# every case and head from safetensors; .bin for one case (the reader is shared, the renames are the same)
PARITY = [(case, head, True) for case in sorted(CASES) for head in sorted(HEADS)] + [
    ("ngram2", head, False) for head in sorted(HEADS)]


@pytest.mark.parametrize("case,head,safe", PARITY)
def test_checkpoint_parity(case, head, safe, checkpoint):
    theirs, folder = checkpoint(case, head, safe=safe)
    ours = getattr(leanformers, HEADS[head]).from_pretrained(folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    inputs = _inputs()
    expected, got = _run(theirs, *inputs), _run(ours, *inputs)
    first = "logits" if head == "lm" else "last_hidden_state"
    keys = [k for k in ("logits", "logits_ngram", "last_hidden_state", "last_hidden_state_ngram",
                        "encoder_last_hidden_state") if k in expected]
    assert_close(expected, got, keys=keys, what=f"{case} {head}")
    assert float(expected[first].abs().max()) > 0.1  # the comparison is not between near-zero tensors
    second = "logits_ngram" if head == "lm" else "last_hidden_state_ngram"
    assert torch.equal(got[0], got[first])  # tuple access follows transformers' field order
    assert torch.equal(got[1], got[second]) if second in expected else got[1] is got.past_key_values


def test_auto_class_and_generation_protocol_inputs(checkpoint):
    theirs, folder = checkpoint()
    ours = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(ours).__name__ == "ProphetNetForConditionalGeneration"
    assert type(leanformers.AutoModel.from_pretrained(folder)).__name__ == "ProphetNetModel"
    ids, mask, decoder_ids, _ = _inputs()
    with torch.no_grad():
        encoder_outputs = ours.get_encoder()(input_ids=ids, attention_mask=mask)
        expected = theirs(attention_mask=mask, decoder_input_ids=decoder_ids, encoder_outputs=BaseModelOutput(
            last_hidden_state=encoder_outputs.last_hidden_state))
        got = ours(attention_mask=mask, decoder_input_ids=decoder_ids, encoder_outputs=encoder_outputs)
        from_tuple = ours(attention_mask=mask, decoder_input_ids=decoder_ids,
                          encoder_outputs=(encoder_outputs.last_hidden_state,))
    assert_close(expected, got, keys=["logits", "logits_ngram"])
    assert torch.equal(got.logits, from_tuple.logits)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cache_path_equals_the_oracles(case, checkpoint):
    """Prefill 3 decoder tokens, then one at a time against the cache: logits and logits_ngram equal the oracle's
    own cache path. (In transformers a position's ProphetNet logits depend on how many decoder tokens one call
    holds, so its cache path does not reproduce its full forward; parity with each path is what is checked.)"""
    theirs, folder = checkpoint(case)
    ours = leanformers.ProphetNetForConditionalGeneration.from_pretrained(folder)
    ids, mask, decoder_ids, _ = _inputs()

    def stepwise(model):
        with torch.no_grad():
            encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
            step = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=decoder_ids[:, :3],
                         use_cache=True)
            pieces = [step]
            for t in range(3, decoder_ids.shape[1]):
                step = model(encoder_outputs=encoder_outputs, attention_mask=mask,
                             decoder_input_ids=decoder_ids[:, t:t + 1], past_key_values=step.past_key_values,
                             use_cache=True)
                pieces.append(step)
        return pieces, step.past_key_values

    pieces, cache = stepwise(ours)
    assert cache.cross[0] is not None and cache.get_seq_length() == decoder_ids.shape[1]  # cross K/V kept once
    expected, _ = stepwise(theirs)
    for a, b in zip(expected, pieces):
        assert_close(a, b, keys=["logits", "logits_ngram"] if "logits_ngram" in a else ["logits"], what=case)


@pytest.mark.parametrize("overrides", [{}, dict(eps=0.1), dict(disable_ngram_loss=True)],
                         ids=["plain", "smoothed", "main-stream-only"])
def test_labels_give_the_ngram_loss(overrides, checkpoint):
    theirs, folder = checkpoint("ngram3-untied", **overrides)
    ours = leanformers.ProphetNetForConditionalGeneration.from_pretrained(folder)
    ids, mask, labels, label_mask = _inputs()
    labels = labels.masked_fill(label_mask == 0, -100)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(expected, got, keys=["loss", "logits", "logits_ngram"])
    assert torch.equal(got[0], got.loss)


def test_hidden_states_of_both_streams(checkpoint):
    theirs, folder = checkpoint("ngram2", "base")
    ours = leanformers.ProphetNetModel.from_pretrained(folder)
    inputs = _inputs()
    expected = _run(theirs, *inputs, output_hidden_states=True)
    got = _run(ours, *inputs, output_hidden_states=True)
    for key in ("encoder_hidden_states", "decoder_hidden_states", "decoder_ngram_hidden_states"):
        assert len(expected[key]) == len(got[key]), key
        for i, (a, b) in enumerate(zip(expected[key], got[key])):
            assert max_diff(a, b) <= 1e-4, f"{key}[{i}]"


@pytest.mark.parametrize("case", ["ngram2", "ngram3-untied"])
@pytest.mark.parametrize("mode", sorted(SEQ2SEQ_GENERATION))
def test_generate_ids_equal_the_oracle(case, mode, checkpoint):
    # untied heads give varied sequences (a random tied model keeps repeating its last token)
    theirs, folder = checkpoint(case, tie_word_embeddings=False)
    ours = leanformers.ProphetNetForConditionalGeneration.from_pretrained(folder)
    ids, mask, _, _ = _inputs(length=11)
    expected = assert_generate_equal(theirs, ours, ids, mask, what=case, **SEQ2SEQ_GENERATION[mode])
    assert len(set(expected[0].tolist())) > 2  # the sequences are varied, not one token repeated


def test_clear_errors(checkpoint):
    _, folder = checkpoint()
    ours = leanformers.ProphetNetForConditionalGeneration.from_pretrained(folder)
    ids, mask, decoder_ids, _ = _inputs()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        _run(ours, ids, mask, torch.randint(3, VOCAB, (1, 70)))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        _run(ours, torch.randint(3, VOCAB, (1, 70)), None, decoder_ids[:1])
    with pytest.raises(ValueError, match="decoder_input_ids"):
        _run(ours, ids, mask, None)
    step = _run(ours, ids, mask, decoder_ids[:, :2], use_cache=True)
    with pytest.raises(ValueError, match="one token at a time"):
        _run(ours, ids, mask, decoder_ids[:, 2:4], past_key_values=step.past_key_values, use_cache=True)


@pytest.mark.parametrize("case, head", [("ngram2", "lm"), ("ngram3-untied", "lm"), ("ngram2", "base")])
def test_output_attentions(case, head, checkpoint):
    """transformers' attentions: decoder main / n-gram stream probabilities, cross-attention and encoder scores
    before the softmax (masked), every layer, padded inputs."""
    theirs, folder = checkpoint(case, head)
    ours = getattr(leanformers, HEADS[head]).from_pretrained(folder)
    ids, mask, decoder_ids, decoder_mask = _inputs()
    expected = _run(theirs, ids, mask, decoder_ids, decoder_mask, output_attentions=True, output_hidden_states=True)
    got = _run(ours, ids, mask, decoder_ids, decoder_mask, output_attentions=True, output_hidden_states=True)
    for key in ("decoder_attentions", "decoder_ngram_attentions", "cross_attentions", "encoder_attentions"):
        assert len(expected[key]) == len(got[key]), key
        for a, b in zip(expected[key], got[key]):
            assert a.shape == b.shape, f"{key}: {tuple(a.shape)} vs {tuple(b.shape)}"
            real = a > torch.finfo(a.dtype).min / 2  # masked scores: both near the dtype's minimum
            assert torch.equal(real, b > torch.finfo(b.dtype).min / 2), key
            assert max_diff(a[real], b[real]) <= 1e-4, key
    assert_close(expected, got, keys=["logits" if head == "lm" else "last_hidden_state"])
    names = [k for k in expected.keys() if expected[k] is not None]
    assert [k for k in got.keys() if got[k] is not None and k in names] == names  # transformers' field order
