"""Every encoder-decoder architecture x head against the oracle on tiny random checkpoints (safetensors and .bin):
logits of mixed-length padded batches, the cache path against a full forward, padded rows against single runs, the
loss from labels, hidden states and attentions, and generate()'s greedy / beam ids against the oracle's .generate()."""
import logging

import pytest
import torch
import transformers

import leanformers
from oracle import (SEQ2SEQ_GENERATION, assert_cache_path_equals_full_forward, assert_close, max_diff,
                    random_inputs, save_tiny)

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 99
# init larger than transformers' 0.02 so that a wrong op shows in the logits, not only in the 7th digit
_FAIRSEQ = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=64,
                init_std=0.1, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
_T5 = dict(vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=37, relative_attention_num_buckets=8,
           relative_attention_max_distance=20, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

# case -> (class-name prefix of the oracle, its LM class suffix, config)
TINY = {
    "bart": ("Bart", "ForConditionalGeneration", lambda: transformers.BartConfig(**_FAIRSEQ)),
    "mbart": ("MBart", "ForConditionalGeneration", lambda: transformers.MBartConfig(
        **_FAIRSEQ, scale_embedding=True, activation_function="relu")),
    "marian": ("Marian", "MTModel", lambda: transformers.MarianConfig(**{**_FAIRSEQ, "decoder_start_token_id": 1})),
    "marian-own-target-vocab": ("Marian", "MTModel", lambda: transformers.MarianConfig(
        **{**_FAIRSEQ, "decoder_start_token_id": 1}, share_encoder_decoder_embeddings=False)),
    "pegasus": ("Pegasus", "ForConditionalGeneration", lambda: transformers.PegasusConfig(
        **{**_FAIRSEQ, "decoder_start_token_id": 1}, scale_embedding=True)),
    "m2m100": ("M2M100", "ForConditionalGeneration", lambda: transformers.M2M100Config(
        **_FAIRSEQ, scale_embedding=True)),
    "t5": ("T5", "ForConditionalGeneration", lambda: transformers.T5Config(**_T5)),
    "t5-v1.1": ("T5", "ForConditionalGeneration", lambda: transformers.T5Config(
        **_T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "mt5-deeper-decoder": ("MT5", "ForConditionalGeneration", lambda: transformers.MT5Config(
        **_T5, num_decoder_layers=3)),
}
HEADS = {"lm": None, "base": "Model", "seq": "ForSequenceClassification", "qa": "ForQuestionAnswering"}
HAS = {"bart": tuple(HEADS), "mbart": tuple(HEADS), "t5": tuple(HEADS), "mt5-deeper-decoder": tuple(HEADS)}
CASES = [(case, head) for case in TINY for head in HAS.get(case, ("lm", "base"))]
# the oracle's generate() builds its cache for config.num_layers decoder layers, so it cannot run a T5 whose decoder
# is deeper than its encoder; that case is checked on forward passes only
GENERATE = [case for case in TINY if case != "mt5-deeper-decoder"]


def _class_name(case, head):
    prefix, lm, _ = TINY[case]
    return prefix + (HEADS[head] or lm)


def _oracle(case, head="lm", **overrides):
    config = TINY[case][2]()
    for k, v in overrides.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    return getattr(transformers, _class_name(case, head))(config).eval()


_SAVED = {}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(oracle model, its saved folder), built once per module for each (case, head, format, overrides)."""
    def get(case, head="lm", safe=True, **overrides):
        key = (case, head, safe, tuple(sorted(overrides.items())))
        if key not in _SAVED:
            theirs = _oracle(case, head, **overrides)
            _SAVED[key] = theirs, save_tiny(theirs, tmp_path_factory.mktemp(case), safe=safe)
        return _SAVED[key]
    return get


def _inputs(config, batch=3, length=9, decoder_length=7):
    """Encoder ids ending in </s> at each row's last real token (right padding), and padded decoder ids."""
    ids, mask = random_inputs(config.vocab_size, batch, length, special=(3,))
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    ids[torch.arange(batch), mask.sum(1) - 1] = config.eos_token_id
    decoder_vocab = getattr(config, "decoder_vocab_size", None) or config.vocab_size
    decoder_ids, decoder_mask = random_inputs(decoder_vocab, batch, decoder_length, seed=1, special=(3,))
    return ids, mask, decoder_ids, decoder_mask


def _forward(model, head, ids, mask, decoder_ids, decoder_mask, **kwargs):
    decoder = {} if head in ("seq", "qa") else dict(decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **decoder, **kwargs)


def _load(case, head, folder, **kwargs):
    return getattr(leanformers, _class_name(case, head)).from_pretrained(folder, **kwargs)


@pytest.mark.parametrize("case,head", CASES)
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_checkpoint_parity(case, head, safe, checkpoint):
    theirs, folder = checkpoint(case, head, safe=safe)
    ours = _load(case, head, folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    inputs = _inputs(theirs.config)
    expected, got = _forward(theirs, head, *inputs), _forward(ours, head, *inputs)
    assert_close(expected, got, what=f"{case} {head}")
    first = "last_hidden_state" if head == "base" else "start_logits" if head == "qa" else "logits"
    assert float(expected[first].abs().max()) > 0.1  # the comparison is not between near-zero tensors
    assert torch.equal(got[0], got[first])  # tuple access follows transformers' field order


@pytest.mark.parametrize("case", sorted(TINY))
def test_cache_path_equals_full_forward(case, checkpoint):
    """Prefill 3 decoder tokens, then one at a time against the cache: the logits of a single full forward."""
    theirs, folder = checkpoint(case)
    ours = _load(case, "lm", folder)
    ids, mask, decoder_ids, _ = _inputs(theirs.config)
    assert_cache_path_equals_full_forward(ours, ids, mask, decoder_ids)


@pytest.mark.parametrize("case", sorted(TINY))
def test_padded_rows_equal_single_runs(case, checkpoint):
    theirs, folder = checkpoint(case)
    ours = _load(case, "lm", folder)
    ids, mask, decoder_ids, decoder_mask = _inputs(theirs.config)
    batched = _forward(ours, "lm", ids, mask, decoder_ids, decoder_mask).logits
    for i in range(ids.shape[0]):
        keep, decoder_keep = mask[i].bool(), decoder_mask[i].bool()
        alone = _forward(ours, "lm", ids[i:i + 1, keep], None, decoder_ids[i:i + 1, decoder_keep], None).logits
        assert max_diff(batched[i, decoder_keep], alone[0]) <= 1e-4, f"row {i}"


@pytest.mark.parametrize("case", sorted(TINY))
def test_labels_give_the_loss_and_decoder_inputs(case, checkpoint):
    """labels alone: decoder inputs are the labels shifted right (mBART: its last token first); -100 ignored."""
    theirs, folder = checkpoint(case)
    ours = _load(case, "lm", folder)
    ids, mask, labels, label_mask = _inputs(theirs.config)
    labels = labels.masked_fill(label_mask == 0, -100)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(expected, got, keys=["loss", "logits", "encoder_last_hidden_state"], what=case)
    assert got.past_key_values is None  # a training-style call keeps no cache, as transformers


@pytest.mark.parametrize("case", ["bart", "mbart", "marian", "m2m100", "t5", "mt5-deeper-decoder"])
def test_hidden_states_and_attentions(case, checkpoint):
    theirs, folder = checkpoint(case)
    ours = _load(case, "lm", folder)
    inputs = _inputs(theirs.config)
    shown = dict(output_hidden_states=True, output_attentions=True)
    theirs.config._attn_implementation = "eager"  # the oracle returns attention probabilities only from eager
    try:
        expected = _forward(theirs, "lm", *inputs, **shown)
    finally:
        theirs.config._attn_implementation = "sdpa"
    got = _forward(ours, "lm", *inputs, **shown)
    for key in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                "cross_attentions"):
        assert len(expected[key]) == len(got[key]), key
        for i, (a, b) in enumerate(zip(expected[key], got[key])):
            assert max_diff(a, b) <= 1e-4, f"{key}[{i}]"


# random tied models keep repeating their last token; untied heads (and T5's larger init) give varied sequences
_VARIED = {"t5": dict(initializer_factor=10.0)}


@pytest.mark.parametrize("case", GENERATE)
@pytest.mark.parametrize("mode", sorted(SEQ2SEQ_GENERATION))
def test_generate_ids_equal_the_oracle(case, mode, checkpoint):
    theirs, folder = checkpoint(case, **_VARIED.get(case, dict(tie_word_embeddings=False)))
    ours = _load(case, "lm", folder)
    ids, mask, _, _ = _inputs(theirs.config, length=11)
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask, **SEQ2SEQ_GENERATION[mode])
    got = ours.generate(input_ids=ids, attention_mask=mask, **SEQ2SEQ_GENERATION[mode])
    assert got.shape == expected.shape and torch.equal(got, expected), f"{case} {mode}:\n{expected}\n{got}"
    assert expected.shape[1] > 5 and len(set(expected[:, 1:].flatten().tolist())) > 3


@pytest.mark.parametrize("case", sorted(TINY))
def test_auto_classes_and_names(case, checkpoint):
    theirs, folder = checkpoint(case)
    lm = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(lm).__name__ == type(theirs).__name__
    assert lm.config.is_encoder_decoder
    assert lm.get_encoder() is lm.model.encoder and lm.get_decoder() is lm.model.decoder
    base = leanformers.AutoModel.from_pretrained(folder)  # an LM checkpoint into the base model
    assert type(base).__name__ == TINY[case][0] + "Model"
    assert not base.loading_info["missing_keys"], base.loading_info
    inputs = _inputs(theirs.config)
    oracle_base = transformers.AutoModel.from_pretrained(folder).eval()
    assert_close(_forward(oracle_base, "base", *inputs), _forward(base, "base", *inputs), what=case)


def test_tied_t5_scales_the_decoder_output(checkpoint):
    """T5 v1.0 ties the LM head to the embeddings and multiplies the decoder output by d_model**-0.5 first."""
    theirs, folder = checkpoint("t5")
    ours = _load("t5", "lm", folder)
    assert ours.head.decoder.weight is ours.model.decoder.embeddings.word.weight
    assert ours.model.decoder.embeddings.word is ours.model.encoder.embeddings.word
    inputs = _inputs(theirs.config)
    hidden = _forward(ours, "lm", *inputs, output_hidden_states=True).decoder_hidden_states[-1]
    logits = _forward(ours, "lm", *inputs).logits
    assert max_diff(logits, hidden @ ours.head.decoder.weight.T * 32 ** -0.5) <= 1e-5


def test_marian_own_target_vocabulary(checkpoint):
    theirs, folder = checkpoint("marian-own-target-vocab")
    ours = _load("marian-own-target-vocab", "lm", folder)
    assert ours.model.decoder.embeddings.word is not ours.model.encoder.embeddings.word
    assert ours.head.decoder.weight is ours.model.decoder.embeddings.word.weight
    assert not torch.equal(ours.model.decoder.embeddings.word.weight, ours.model.encoder.embeddings.word.weight)
    # a target vocabulary of another size cannot be tied to the decoder's (vocab_size) input embeddings
    config = theirs.config.to_dict() | {"decoder_vocab_size": 71}
    with pytest.raises(ValueError, match="decoder_vocab_size=71 differs from vocab_size=99"):
        leanformers.MarianMTModel.from_config(config)


def test_base_checkpoint_into_lm_model(checkpoint):
    """A BartModel checkpoint: the tied LM head needs nothing new; final_logits_bias starts at zero, as transformers."""
    theirs, folder = checkpoint("bart", "base")
    ours = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    oracle_lm = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    assert set(ours.loading_info["missing_keys"]) <= {"head.final_logits_bias"}, ours.loading_info
    inputs = _inputs(theirs.config)
    assert_close(_forward(oracle_lm, "lm", *inputs), _forward(ours, "lm", *inputs), keys=["logits"])


def test_bart_base_model_shifts_input_ids_when_no_decoder_inputs(checkpoint):
    for case in ("bart", "mbart"):
        theirs, folder = checkpoint(case, "base")
        ours = _load(case, "base", folder)
        ids, mask, _, _ = _inputs(theirs.config)
        with torch.no_grad():
            assert_close(theirs(input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask))


# ---------------------------------------------------------------- bad input
def test_decoder_only_or_encoder_only_checkpoint_for_seq2seq(tmp_path):
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2))
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=20))
    for name, model in (("gpt2", gpt2), ("bert", bert)):
        folder = save_tiny(model, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name} is not an encoder-decoder model \\((decoder|encoder) only\\)"):
            leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)


def test_input_longer_than_the_encoder_window(checkpoint):
    ours = _load("marian", "lm", checkpoint("marian")[1])
    too_long = torch.full((1, 65), 5)
    with pytest.raises(ValueError, match="max_position_embeddings=64.*truncation"):
        ours(input_ids=too_long, decoder_input_ids=too_long[:, :2])
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        ours.generate(input_ids=too_long, max_new_tokens=2)


def test_missing_decoder_inputs_and_unknown_arguments(checkpoint):
    ours = _load("marian", "lm", checkpoint("marian")[1])
    ids = torch.full((1, 5), 5)
    with pytest.raises(ValueError, match="needs decoder_input_ids"):
        ours(input_ids=ids)
    with pytest.raises(TypeError, match="token_type_ids"):
        ours(input_ids=ids, decoder_input_ids=ids, token_type_ids=ids)


def test_config_without_sizes_takes_the_config_class_defaults(checkpoint):
    """A config.json that leaves a size out gets transformers' BartConfig default, as transformers builds it."""
    config = checkpoint("bart")[0].config.to_dict()
    del config["decoder_ffn_dim"]
    theirs = transformers.BartForConditionalGeneration(transformers.BartConfig(**config))
    ours = leanformers.AutoModelForSeq2SeqLM.from_config(config)
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items() if "decoder.layers.0.fc1" in k}
    assert expected == {"model.decoder.layers.0.fc1.weight": (4096, 32), "model.decoder.layers.0.fc1.bias": (4096,)}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items() if "decoder.layers.0.mlp.up" in k}
    assert sorted(ours_shapes.values()) == sorted(expected.values())


def test_classification_needs_the_same_number_of_eos(checkpoint):
    ours = _load("bart", "seq", checkpoint("bart", "seq")[1])
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 6, 7, 8, 2]])
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        ours(input_ids=ids)


# ---------------------------------------------------------------- generation settings from the checkpoint
@pytest.mark.parametrize("case", ["marian", "m2m100", "t5-v1.1"])
def test_generation_config_json_is_applied(case, tmp_path):
    """Marian-style generation_config.json (beams, max_length, bad_words_ids = pad, ...) used by a bare generate()."""
    theirs = _oracle(case, tie_word_embeddings=False)
    pad = theirs.config.pad_token_id
    theirs.generation_config.update(num_beams=3, max_length=9, bad_words_ids=[[pad]] if pad else None,
                                    no_repeat_ngram_size=2, length_penalty=0.5, renormalize_logits=True)
    folder = save_tiny(theirs, tmp_path / "ckpt")
    ours = _load(case, "lm", folder)
    assert ours.generation_config.num_beams == 3 and ours.generation_config.max_length == 9
    ids, mask, _, _ = _inputs(theirs.config)
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask)
    assert torch.equal(ours.generate(input_ids=ids, attention_mask=mask), expected)


@pytest.mark.parametrize("case", ["mbart", "m2m100"])
def test_forced_target_language_and_decoder_prompt(case, checkpoint):
    """mBART-50 / M2M100 translation forces the target-language token first; a decoder prompt continues as given."""
    theirs, folder = checkpoint(case, tie_word_embeddings=False)
    ours = _load(case, "lm", folder)
    ids, mask, _, _ = _inputs(theirs.config)
    prompt = torch.tensor([[theirs.config.decoder_start_token_id, 7, 8]] * 3)
    for kwargs in (dict(forced_bos_token_id=9, num_beams=2, max_new_tokens=6), dict(decoder_input_ids=prompt,
                                                                                   max_new_tokens=5)):
        with torch.no_grad():
            expected = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
        assert torch.equal(ours.generate(input_ids=ids, attention_mask=mask, **kwargs), expected), kwargs


def test_tuple_outputs_and_encoder_outputs_as_tuple(checkpoint):
    theirs, folder = checkpoint("pegasus")
    ours = _load("pegasus", "lm", folder)
    ids, mask, decoder_ids, decoder_mask = _inputs(theirs.config)
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, return_dict=False)
        encoded = ours.get_encoder()(input_ids=ids, attention_mask=mask)
        got = ours(encoder_outputs=(encoded.last_hidden_state,), attention_mask=mask, decoder_input_ids=decoder_ids,
                   return_dict=False)
    assert isinstance(got, tuple) and max_diff(expected[0], got[0]) <= 1e-4


@pytest.mark.parametrize("case", ["bart", "t5-v1.1", "m2m100"])
def test_half_precision_runs_close_to_float32(case, checkpoint):
    theirs, folder = checkpoint(case)
    ours32, ours16 = _load(case, "lm", folder), _load(case, "lm", folder, dtype=torch.bfloat16)
    assert ours16.dtype == torch.bfloat16
    inputs = _inputs(theirs.config)
    full, half = _forward(ours32, "lm", *inputs).logits, _forward(ours16, "lm", *inputs).logits
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    assert max_diff(full, half) <= 0.1 * float(full.abs().max())


@pytest.mark.parametrize("case", ["marian", "pegasus", "t5"])
def test_full_state_dict_as_old_hub_files_carry_it(case, checkpoint, tmp_path):
    """Older hub .bin files hold every name: shared and per-side embeddings, lm_head, the stored sinusoid tables."""
    theirs, folder = checkpoint(case)
    theirs.config.save_pretrained(tmp_path)
    torch.save(theirs.state_dict(), tmp_path / "pytorch_model.bin")
    ours = _load(case, "lm", str(tmp_path))
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    inputs = _inputs(theirs.config)
    assert_close(_forward(theirs, "lm", *inputs), _forward(ours, "lm", *inputs), keys=["logits"])
