"""Grouped cross-attention: generate() keeps the encoder output at (B, S, H) for its B * k beam (or sampled) rows.

Attention called directly: the grouped form (K/V of B sentences, each sentence's k rows consecutive) equals the
expanded one (K/V repeated per row) within 1e-6, probabilities included. generate() on tiny oracle checkpoints:
the cross K/V held in the cache have B rows, not B * k, and the ids equal the oracle's (beam search with length
penalty, no_repeat_ngram_size, early stopping on mixed-length batches; sampling with num_return_sequences; greedy)."""
import logging

import pytest
import torch
import transformers

import leanformers
from leanformers.modeling.attention import Attention, attention_bias
from leanformers.modeling.cache import KVCache
from oracle import SEQ2SEQ_GENERATION, max_diff, random_inputs, save_tiny

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 99
GROUPED_ATOL = 1e-6
_FAIRSEQ = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=64,
                init_std=0.1, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                tie_word_embeddings=False)
_BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, initializer_range=0.1)


def _bert2gpt2():
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**_BERT), transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=24, n_layer=2, n_head=2, n_positions=64, initializer_range=0.1,
            is_decoder=True, add_cross_attention=True, tie_word_embeddings=False))  # untied: varied ids
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 3, 0, 2
    return transformers.EncoderDecoderModel(config)


# case -> the oracle model (seeded); its special tokens are read from its config
ORACLES = {
    "marian": lambda: transformers.MarianMTModel(transformers.MarianConfig(
        **{**_FAIRSEQ, "decoder_start_token_id": 1})),
    "bart": lambda: transformers.BartForConditionalGeneration(transformers.BartConfig(**_FAIRSEQ)),
    "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=37, relative_attention_num_buckets=8,
        relative_attention_max_distance=20, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        initializer_factor=10.0)),
    "bert2gpt2": _bert2gpt2,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """case -> (oracle model, our model loaded from its saved checkpoint), built once per case."""
    made = {}

    def get(case):
        if case not in made:
            torch.manual_seed(0)
            theirs = ORACLES[case]().eval()
            folder = save_tiny(theirs, tmp_path_factory.mktemp(case))
            made[case] = theirs, leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
        return made[case]

    return get


# ---------------------------------------------------------------- Attention called directly
def _attention(num_kv_heads=None, seed=0):
    torch.manual_seed(seed)
    attention = Attention(32, 4, num_kv_heads=num_kv_heads, kv_hidden=24).eval()
    for parameter in attention.parameters():  # larger than the default init so that a wrong op shows
        torch.nn.init.normal_(parameter, std=0.15)
    return attention


def _case(batch=3, group=4, length=1, source=7, padded=True, seed=1):
    """x (B*k, T, 32), encoder states (B, S, 24), encoder mask (B, S) (mixed lengths) or None."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * group, length, 32, generator=g)
    states = torch.randn(batch, source, 24, generator=g)
    mask = random_inputs(VOCAB, batch, source, seed=seed)[1] if padded else None
    return x, states, mask


def _grouped_and_expanded(attention, x, states, bias, group, output_attentions, cache=None):
    expanded_bias = None if bias is None or bias.shape[0] == 1 else bias.repeat_interleave(group, dim=0)
    expanded_bias = bias if expanded_bias is None else expanded_bias
    with torch.no_grad():
        grouped = attention(x, bias, kv_states=states, output_attentions=output_attentions, cache=cache)
        expanded = attention(x, expanded_bias, kv_states=states.repeat_interleave(group, dim=0),
                             output_attentions=output_attentions)
    return grouped, expanded


def _assert_same_attention(grouped, expanded, output_attentions):
    (out, probs), (expected_out, expected_probs) = grouped, expanded
    assert out.shape == expected_out.shape
    assert max_diff(out, expected_out) <= GROUPED_ATOL, max_diff(out, expected_out)
    if output_attentions:
        assert probs.shape == expected_probs.shape, (probs.shape, expected_probs.shape)
        assert max_diff(probs, expected_probs) <= GROUPED_ATOL, max_diff(probs, expected_probs)
        assert float(probs.sum(-1).sub(1).abs().max()) < 1e-5
    else:
        assert probs is None and expected_probs is None


@pytest.mark.parametrize("output_attentions", [False, True], ids=["sdpa", "probs"])
@pytest.mark.parametrize("length", [1, 3], ids=["one-query", "three-queries"])
@pytest.mark.parametrize("num_kv_heads", [None, 2], ids=["mha", "gqa"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_grouped_equals_expanded(output_attentions, length, num_kv_heads, padded):
    attention = _attention(num_kv_heads)
    group = 4
    x, states, mask = _case(group=group, length=length, padded=padded)
    bias = attention_bias(mask, length, states.shape[1], False, torch.float32)  # (B, 1, T, S) or None
    assert (bias is not None) == padded
    grouped, expanded = _grouped_and_expanded(attention, x, states, bias, group, output_attentions)
    _assert_same_attention(grouped, expanded, output_attentions)


@pytest.mark.parametrize("output_attentions", [False, True], ids=["sdpa", "probs"])
def test_grouped_takes_any_additive_bias(output_attentions):
    """A per-head, per-query bias (B, H, T, S) and a batch-broadcast one (1, 1, 1, S) fit the grouped queries."""
    attention, group, length = _attention(), 3, 2
    x, states, _ = _case(batch=2, group=group, length=length)
    g = torch.Generator().manual_seed(5)
    for bias in (torch.randn(2, 4, length, states.shape[1], generator=g),
                 torch.randn(1, 1, 1, states.shape[1], generator=g)):
        grouped, expanded = _grouped_and_expanded(attention, x, states, bias, group, output_attentions)
        _assert_same_attention(grouped, expanded, output_attentions)


def test_grouped_cache_keeps_one_row_per_sentence():
    """The first call projects K/V of the B sentences into cache.cross; the next step reads them, B rows still."""
    attention, group = _attention(), 4
    x, states, mask = _case(group=group)
    bias = attention_bias(mask, 1, states.shape[1], False, torch.float32)
    cache = KVCache(1)
    for step in range(2):
        x_step = x + step
        grouped, expanded = _grouped_and_expanded(attention, x_step, states, bias, group, True, cache=cache)
        _assert_same_attention(grouped, expanded, True)
        assert cache.cross[0][0].shape[0] == states.shape[0] and cache.cross[0][1].shape[0] == states.shape[0]
    beam_idx = torch.tensor([0, 0, 2, 1, 5, 4, 4, 7, 8, 11, 10, 9])  # beams move within their sentence
    kept = cache.cross[0]
    cache.reorder_cache(beam_idx)
    assert cache.cross[0] is kept


def test_grouped_errors_name_the_mismatch():
    attention = _attention()
    x, states, mask = _case(batch=3, group=2)
    with pytest.raises(ValueError, match="6 decoder rows for 4 encoder rows"):
        attention(x, None, kv_states=torch.randn(4, 7, 24))
    bias = attention_bias(mask.repeat_interleave(2, dim=0), 1, 7, False, torch.float32)  # an expanded mask
    with pytest.raises(ValueError, match="encoder attention mask has 6 rows for 3 encoder rows"):
        attention(x, bias, kv_states=states)


# ---------------------------------------------------------------- generate() on tiny checkpoints
def _encoder_inputs(config, batch=3, length=11):
    """Right-padded mixed-length ids ending in </s>."""
    ids, mask = random_inputs(VOCAB, batch, length, special=(3,))
    ids = ids.masked_fill(mask == 0, config.pad_token_id)
    ids[torch.arange(batch), mask.sum(1) - 1] = config.eos_token_id
    return ids, mask


def _cross_rows(cache) -> set:
    return {kv[0].shape[0] for kv in cache.cross if kv is not None} | {kv[1].shape[0] for kv in cache.cross
                                                                          if kv is not None}


@pytest.mark.parametrize("case", sorted(ORACLES))
@pytest.mark.parametrize("mode", ["beam", "beam-never-early"])
def test_beam_search_keeps_one_cross_row_per_sentence(case, mode, pair):
    theirs, ours = pair(case)
    assert ours.grouped_cross_attention
    ids, mask = _encoder_inputs(theirs.config)
    settings = SEQ2SEQ_GENERATION[mode]
    with torch.no_grad():
        expected = theirs.generate(input_ids=ids, attention_mask=mask, **settings)
    got = ours.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **settings)
    assert torch.equal(got.sequences, expected), f"{case} {mode}:\n{expected}\n{got.sequences}"
    assert len(set(expected[:, 1:].flatten().tolist())) > 3  # varied ids, not one repeated token
    cache = got.past_key_values
    assert sum(kv is not None for kv in cache.cross) == len(cache.cross) > 0
    assert _cross_rows(cache) == {ids.shape[0]}, f"cross K/V rows {_cross_rows(cache)} for {ids.shape[0]} inputs"
    assert got.encoder_outputs.last_hidden_state.shape[0] == ids.shape[0]


@pytest.mark.parametrize("case", ["marian", "bert2gpt2"])
def test_sampling_greedy_and_uncached_beams(case, pair):
    """Sampling several sequences per input, beam sampling, greedy (k = 1), and beams without a cache (the decoder
    then projects the B encoder rows at every step)."""
    theirs, ours = pair(case)
    ids, mask = _encoder_inputs(theirs.config)
    for settings, rows in ((dict(do_sample=True, num_return_sequences=3, top_k=20, max_new_tokens=8), 3),
                           (dict(do_sample=True, num_beams=2, num_return_sequences=2, max_new_tokens=8), 2),
                           (dict(max_new_tokens=8), 1),
                           (dict(num_beams=3, use_cache=False, max_new_tokens=6), 1)):
        torch.manual_seed(7)
        with torch.no_grad():
            expected = theirs.generate(input_ids=ids, attention_mask=mask, **settings)
        torch.manual_seed(7)
        got = ours.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **settings)
        assert torch.equal(got.sequences, expected), f"{case} {settings}:\n{expected}\n{got.sequences}"
        assert got.sequences.shape[0] == rows * ids.shape[0]
        if settings.get("use_cache", True):
            assert _cross_rows(got.past_key_values) == {ids.shape[0]}


def test_models_without_the_flag_get_the_encoder_output_repeated(pair):
    """A model that does not declare grouped_cross_attention (here: ours with the flag cleared) gets today's
    expansion: B * k cross rows, the same ids."""
    theirs, ours = pair("bart")
    ids, mask = _encoder_inputs(theirs.config)
    settings = SEQ2SEQ_GENERATION["beam"]
    grouped = ours.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **settings)
    ours.grouped_cross_attention = False
    try:
        expanded = ours.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True, **settings)
    finally:
        del ours.grouped_cross_attention
    assert torch.equal(grouped.sequences, expanded.sequences)
    assert _cross_rows(expanded.past_key_values) == {ids.shape[0] * settings["num_beams"]}
