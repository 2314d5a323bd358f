"""EncoderDecoderModel pairs (BERT+GPT-2 with enc_to_dec_proj, BERT+BERT, RoBERTa+RoBERTa) against the oracle on tiny
random checkpoints (safetensors and .bin): logits of padded mixed-length batches, the cache path, the loss from
labels, hidden states and attentions, greedy and beam ids of generate(), and a pair built from two checkpoints."""
import logging

import pytest
import torch
import transformers

import leanformers
from oracle import (MODELS, SEQ2SEQ_GENERATION, assert_cache_path_equals_full_forward, assert_close,
                    assert_generate_equal, max_diff, random_inputs, save_tiny)

transformers.logging.set_verbosity_error()

VOCAB = 99
SENTENCES = ["A man is eating food.", "Someone is having a meal.", "The stock market crashed today."]
# init larger than transformers' 0.02 so that a wrong op shows in the logits, not only in the 7th digit
_BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, initializer_range=0.1)
_ROBERTA = dict(_BERT, pad_token_id=1, bos_token_id=0, eos_token_id=2)
_GPT2 = dict(vocab_size=VOCAB, n_embd=24, n_layer=2, n_head=2, n_positions=64, initializer_range=0.1)

# case -> (encoder config, decoder config, special tokens of the pair)
PAIRS = {
    "bert2gpt2": (lambda: transformers.BertConfig(**_BERT), lambda **o: transformers.GPT2Config(**_GPT2, **o),
                  dict(decoder_start_token_id=3, pad_token_id=0, eos_token_id=2)),
    "bert2bert": (lambda: transformers.BertConfig(**_BERT), lambda **o: transformers.BertConfig(**_BERT, **o),
                  dict(decoder_start_token_id=3, pad_token_id=0, eos_token_id=2)),
    "roberta2roberta": (lambda: transformers.RobertaConfig(**_ROBERTA),
                        lambda **o: transformers.RobertaConfig(**_ROBERTA, **o),
                        dict(decoder_start_token_id=0, pad_token_id=1, eos_token_id=2)),
}


def _pair_config(case, **decoder_overrides):
    encoder, decoder, special = PAIRS[case]
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder(), decoder(is_decoder=True, add_cross_attention=True, **decoder_overrides))
    for key, value in special.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    made = {}

    def get(case, safe=True, **decoder_overrides):
        key = (case, safe, tuple(sorted(decoder_overrides.items())))
        if key not in made:
            torch.manual_seed(0)
            model = transformers.EncoderDecoderModel(_pair_config(case, **decoder_overrides)).eval()
            made[key] = model, save_tiny(model, tmp_path_factory.mktemp(case), safe=safe)
        return made[key]

    return get


def _inputs(config, batch=3, length=9, decoder_length=7):
    """Encoder ids right-padded to mixed lengths; decoder ids with a right-padded decoder mask."""
    pad = config.pad_token_id
    ids, mask = random_inputs(VOCAB, batch, length, special=(3,))
    decoder_ids, decoder_mask = random_inputs(VOCAB, batch, decoder_length, seed=1, special=(3,))
    return ids.masked_fill(mask == 0, pad), mask, decoder_ids.masked_fill(decoder_mask == 0, pad), decoder_mask


def _run(model, ids, mask, decoder_ids, decoder_mask=None, **kwargs):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids,
                     decoder_attention_mask=decoder_mask, **kwargs)


@pytest.mark.parametrize("case", sorted(PAIRS))
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_checkpoint_parity(case, safe, checkpoint):
    theirs, folder = checkpoint(case, safe=safe)
    ours = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(ours).__name__ == "EncoderDecoderModel"
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    assert (ours.model.enc_to_dec_proj is not None) == (case == "bert2gpt2")
    inputs = _inputs(theirs.config)
    expected, got = _run(theirs, *inputs), _run(ours, *inputs)
    assert_close(expected, got, keys=["logits", "encoder_last_hidden_state"], what=case)
    assert float(expected.logits.abs().max()) > 0.1  # the comparison is not between near-zero tensors
    assert torch.equal(got[0], got.logits) and got[1] is got.past_key_values  # transformers' field order


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_cache_path_equals_full_forward(case, checkpoint):
    """Prefill 3 decoder tokens, then one at a time against the cache: the logits of a single full forward."""
    theirs, folder = checkpoint(case)
    ours = leanformers.EncoderDecoderModel.from_pretrained(folder)
    ids, mask, decoder_ids, _ = _inputs(theirs.config)
    assert_cache_path_equals_full_forward(ours, ids, mask, decoder_ids, tuple_encoder_outputs=True)


@pytest.mark.parametrize("case", sorted(PAIRS))
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # the oracle's own new_tensor call
def test_labels_give_the_loss_and_decoder_inputs(case, checkpoint):
    theirs, folder = checkpoint(case)
    ours = leanformers.EncoderDecoderModel.from_pretrained(folder)
    ids, mask, labels, label_mask = _inputs(theirs.config)
    labels = labels.masked_fill(label_mask == 0, -100)
    with torch.no_grad(), pytest.warns(FutureWarning):  # the oracle warns that it computes the loss itself
        expected = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(expected, got, keys=["loss", "logits"], what=case)


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_hidden_states_and_attentions(case, checkpoint):
    theirs, folder = checkpoint(case)
    ours = leanformers.EncoderDecoderModel.from_pretrained(folder)
    inputs = _inputs(theirs.config)
    shown = dict(output_hidden_states=True, output_attentions=True)
    theirs.encoder.config._attn_implementation = theirs.decoder.config._attn_implementation = "eager"
    try:  # the oracle returns attention probabilities only from eager
        expected = _run(theirs, *inputs, **shown)
    finally:
        theirs.encoder.config._attn_implementation = theirs.decoder.config._attn_implementation = "sdpa"
    got = _run(ours, *inputs, **shown)
    for key in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                "cross_attentions"):
        assert len(expected[key]) == len(got[key]), key
        for i, (a, b) in enumerate(zip(expected[key], got[key])):
            assert max_diff(a, b) <= 1e-4, f"{key}[{i}]"


@pytest.mark.parametrize("case", sorted(PAIRS))
@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_generate_ids_equal_the_oracle(case, mode, checkpoint):
    # an untied LM head gives varied sequences (a random tied model keeps repeating its last token)
    theirs, folder = checkpoint(case, tie_word_embeddings=False)
    ours = leanformers.EncoderDecoderModel.from_pretrained(folder)
    ids, mask, _, _ = _inputs(theirs.config, length=11)
    expected = assert_generate_equal(theirs, ours, ids, mask, what=case, **SEQ2SEQ_GENERATION[mode])
    assert len(set(expected[0].tolist())) > 3  # the sequences are varied, not one token repeated


_HALVES = {"bert2gpt2": (transformers.BertModel, transformers.GPT2LMHeadModel),
           "bert2bert": (transformers.BertModel, transformers.BertForMaskedLM),
           "roberta2roberta": (transformers.RobertaModel, transformers.RobertaForCausalLM)}


def _pair_from(encoder_folder, decoder_folder, special, tmp_path, caplog):
    """(oracle, ours) built by from_encoder_decoder_pretrained; ours checked to hold both halves' weights as the
    oracle's, then given the oracle's random draws for what is new (cross-attention, projection)."""
    theirs = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_folder, decoder_folder).eval()
    with caplog.at_level(logging.WARNING, logger="leanformers"):
        ours = leanformers.EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_folder, decoder_folder)
    assert "crossattention" in caplog.text  # the new cross-attention weights, under transformers' names
    for model in (theirs, ours):  # set afterwards: the oracle sends decoder_* keyword arguments to the decoder
        for key, value in special.items():  # the generation config was fixed when the pair was made
            setattr(model.config, key, value)
            setattr(model.generation_config, key, value)
    theirs.save_pretrained(tmp_path / "pair")
    reference = leanformers.EncoderDecoderModel.from_pretrained(tmp_path / "pair")
    ours_params, reference_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    assert ours_params.keys() == reference_params.keys()
    new = [name for name in ours_params if "cross_attention" in name or "enc_to_dec_proj" in name
           or name in ours.loading_info["missing_keys"]]
    assert new and all(torch.equal(ours_params[n], reference_params[n]) for n in ours_params if n not in new)
    for name in new:
        ours_params[name].data.copy_(reference_params[name])
    assert ours.config.decoder["is_decoder"] and ours.config.decoder["add_cross_attention"]
    return theirs, ours


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_pair_from_two_checkpoints(case, tmp_path, caplog):
    """from_encoder_decoder_pretrained: with the oracle's random draws copied in, the logits are its logits."""
    encoder_class, decoder_class = _HALVES[case]
    config = _pair_config(case)
    torch.manual_seed(0)
    encoder_class(config.encoder).save_pretrained(tmp_path / "encoder")
    decoder_config = {**config.decoder.to_dict(), "is_decoder": False, "add_cross_attention": False}
    decoder_class(transformers.AutoConfig.for_model(**decoder_config)).save_pretrained(tmp_path / "decoder")
    theirs, ours = _pair_from(str(tmp_path / "encoder"), str(tmp_path / "decoder"), PAIRS[case][2], tmp_path, caplog)
    inputs = _inputs(theirs.config)
    assert_close(_run(theirs, *inputs), _run(ours, *inputs), keys=["logits"], what=case)
    assert ours.generate(input_ids=inputs[0], attention_mask=inputs[1], max_new_tokens=3).shape == (3, 4)


def test_bert2bert_from_the_real_minilm(tmp_path, caplog):
    """The shipped all-MiniLM-L6-v2 as both halves, its own tokenizer: logits and greedy ids as the oracle's."""
    folder = str(MODELS / "minilm")
    special = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)  # [CLS], [PAD], [SEP]
    theirs, ours = _pair_from(folder, folder, special, tmp_path, caplog)
    batch = leanformers.AutoTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert_close(_run(theirs, ids, mask, ids[:, :5]), _run(ours, ids, mask, ids[:, :5]), keys=["logits"])
    assert_generate_equal(theirs, ours, ids, mask, what="minilm", max_new_tokens=6)


def test_clear_errors(checkpoint, tmp_path):
    _, folder = checkpoint("bert2bert")
    config = leanformers.AutoConfig.from_pretrained(folder)
    config.decoder = None
    with pytest.raises(ValueError, match="'decoder' sub-config"):
        leanformers.EncoderDecoderModel.from_config(config)
    config.decoder = {"model_type": "llama", "hidden_size": 32}
    with pytest.raises(ValueError, match="llama model cannot be the decoder"):
        leanformers.EncoderDecoderModel.from_config(config)
    ours = leanformers.EncoderDecoderModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="decoder_pretrained_model_name_or_path"):
        leanformers.EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_model=ours.get_encoder())
    with pytest.raises(ValueError, match="needs decoder_input_ids"):
        ours(input_ids=torch.tensor([[5, 6]]))
    ours.config.decoder_start_token_id = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        ours(input_ids=torch.tensor([[5, 6]]), labels=torch.tensor([[7, 8]]))
