"""generate() against transformers 4.57.6's own .generate() on tiny random models (the oracle's models).

Same model, same inputs: greedy, beam and seeded-sampling ids must be identical and scores equal.
"""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import transformers
from transformers import (BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM, T5Config, T5ForConditionalGeneration)

from leanformers.generation import GenerationConfig, generate

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", category=UserWarning)
logging.getLogger("leanformers").setLevel(logging.ERROR)

VOCAB = 48


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build().eval()


@pytest.fixture(scope="module")
def models():
    """Tiny decoder-only and encoder-decoder models; eos id 2 is made likely so that beams finish early."""
    built = {
        "gpt2": _seeded(lambda: GPT2LMHeadModel(GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2))),
        "llama": _seeded(lambda: LlamaForCausalLM(LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0))),
        "bart": _seeded(lambda: BartForConditionalGeneration(BartConfig(
            vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))),
        "t5": _seeded(lambda: T5ForConditionalGeneration(T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0,
            eos_token_id=1, pad_token_id=0))),
    }
    return built


def _eos_likely(model, eos_id, scale):
    """A copy of `model` whose output row for eos is scaled, so that hypotheses end at varied lengths."""
    import copy
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight[eos_id] *= scale
    return model


def _prompts(name):
    """Mixed-length batch: decoders are left-padded, encoder-decoders right-padded (as their tokenizers do)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 7), generator=g)
    lengths = torch.tensor([7, 4, 2])
    positions = torch.arange(7)[None]
    if name in ("gpt2", "llama"):
        mask = (positions >= (7 - lengths)[:, None]).long()
    else:
        mask = (positions < lengths[:, None]).long()
    pad = {"gpt2": 2, "llama": 0, "bart": 1, "t5": 0}[name]
    return ids.masked_fill(mask == 0, pad), mask


BEAM_SETTINGS = [
    dict(num_beams=4),
    dict(num_beams=4, num_return_sequences=4, length_penalty=0.6, no_repeat_ngram_size=3, early_stopping=True),
    dict(num_beams=3, num_return_sequences=2, length_penalty=2.0, early_stopping="never"),
    dict(num_beams=2, early_stopping=False, length_penalty=-0.5, repetition_penalty=1.3),
]


def _assert_same(theirs, ours):
    if isinstance(theirs, torch.Tensor):
        assert torch.equal(theirs, ours), f"ids differ:\n{theirs}\nours:\n{ours}"
        return
    assert torch.equal(theirs.sequences, ours.sequences), f"ids differ:\n{theirs.sequences}\nours:\n{ours.sequences}"
    assert len(theirs.scores) == len(ours.scores)
    for a, b in zip(theirs.scores, ours.scores):
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        finite = torch.isfinite(a)
        assert (a[finite] - b[finite]).abs().max().item() <= 1e-5
    for a, b in zip(theirs.logits or (), ours.logits or ()):
        assert (a - b).abs().max().item() <= 1e-5
    assert (theirs.logits is None) == (ours.logits is None)
    if getattr(theirs, "sequences_scores", None) is not None:
        assert (theirs.sequences_scores - ours.sequences_scores).abs().max().item() <= 1e-5
        assert torch.equal(theirs.beam_indices.long(), ours.beam_indices.long())


def _both(model, ids, mask, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    theirs = model.generate(ids, attention_mask=mask, **kwargs)
    if seed is not None:
        torch.manual_seed(seed)
    ours = generate(model, ids, attention_mask=mask, **kwargs)
    return theirs, ours


@pytest.mark.parametrize("name", ["gpt2", "llama", "bart", "t5"])
@pytest.mark.parametrize("eos_scale", [1.0, 4.0])
def test_greedy_matches(models, name, eos_scale):
    model = _eos_likely(models[name], 2 if name != "t5" else 1, eos_scale)
    ids, mask = _prompts(name)
    _assert_same(*_both(model, ids, mask, max_new_tokens=12))
    _assert_same(*_both(model, ids, mask, max_new_tokens=12, output_scores=True, return_dict_in_generate=True,
                        output_logits=True))


@pytest.mark.parametrize("name", ["gpt2", "llama", "bart", "t5"])
@pytest.mark.parametrize("setting", range(len(BEAM_SETTINGS)))
def test_beam_search_matches(models, name, setting):
    model = _eos_likely(models[name], 2 if name != "t5" else 1, 3.0)
    ids, mask = _prompts(name)
    kwargs = dict(BEAM_SETTINGS[setting], max_new_tokens=10)
    _assert_same(*_both(model, ids, mask, **kwargs))
    _assert_same(*_both(model, ids, mask, output_scores=True, return_dict_in_generate=True,
                        output_logits=setting == 1, **kwargs))


@pytest.mark.parametrize("name", ["gpt2", "llama", "bart", "t5"])
def test_sampling_matches_with_same_seed(models, name):
    model = models[name]
    ids, mask = _prompts(name)
    for kwargs in (dict(top_k=10, top_p=0.9, temperature=0.7), dict(min_p=0.1, top_k=0, num_return_sequences=2),
                   dict(typical_p=0.8, repetition_penalty=1.2), dict(num_beams=3, top_k=20)):
        _assert_same(*_both(model, ids, mask, seed=7, do_sample=True, max_new_tokens=8, **kwargs))
    # a private torch.Generator seeded alike draws the same as the global RNG
    torch.manual_seed(5)
    theirs = model.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=8)
    torch.manual_seed(123)  # our run must not depend on the global state
    ours = generate(model, ids, attention_mask=mask, do_sample=True, max_new_tokens=8,
                    generator=torch.Generator().manual_seed(5))
    assert torch.equal(theirs, ours)


def test_processors_and_lengths_match(models):
    """Processors that only bite on some steps: min/max lengths, bad words, suppression, several eos ids."""
    model = _eos_likely(models["gpt2"], 2, 4.0)
    ids, mask = _prompts("gpt2")
    settings = [
        dict(max_new_tokens=10, min_new_tokens=6),
        dict(max_length=15, min_length=12),
        dict(max_new_tokens=10, eos_token_id=[2, 5, 7], pad_token_id=3),
        dict(max_new_tokens=10, bad_words_ids=[[5], [8, 9], [2]], suppress_tokens=[10, 11]),
        dict(max_new_tokens=10, begin_suppress_tokens=[2, 4], no_repeat_ngram_size=2),
        dict(max_new_tokens=10, forced_bos_token_id=9, forced_eos_token_id=4),
        dict(max_new_tokens=10, num_beams=3, eos_token_id=[2, 5], min_new_tokens=3),
        dict(max_new_tokens=10, exponential_decay_length_penalty=(3, 1.5), renormalize_logits=True),
        dict(max_new_tokens=10, use_cache=False),
        dict(max_new_tokens=10, num_beams=2, use_cache=False),
    ]
    for kwargs in settings:
        _assert_same(*_both(model, ids, mask, output_scores=True, return_dict_in_generate=True, **kwargs))
    _assert_same(*_both(model, None, None, max_new_tokens=5))  # no prompt: starts from bos
    out = generate(model, ids, attention_mask=mask, max_new_tokens=3, num_beams=2, return_dict_in_generate=True)
    out.sequences[0, 0] = 1  # results are ordinary tensors, editable outside inference mode
    generate(model, ids, attention_mask=mask, max_new_tokens=3)[0, 0] = 1


def test_encoder_decoder_features(models):
    model = _eos_likely(models["bart"], 2, 2.0)
    ids, mask = _prompts("bart")
    for kwargs in (dict(forced_bos_token_id=7, num_beams=3), dict(encoder_no_repeat_ngram_size=2),
                   dict(encoder_repetition_penalty=1.5, decoder_start_token_id=5),
                   dict(decoder_input_ids=torch.tensor([[9, 10]] * 3)), dict(min_length=8, num_beams=2),
                   dict(decoder_input_ids=torch.tensor([[2, 9, 10]] * 3),
                        decoder_attention_mask=torch.tensor([[1, 1, 1]] * 3), num_beams=2)):
        _assert_same(*_both(model, ids, mask, max_new_tokens=9, **kwargs))
    # the encoder runs once, however many steps and beams
    calls = []
    hook = model.get_encoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        generate(model, ids, attention_mask=mask, num_beams=3, max_new_tokens=6)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_default_lengths_and_model_generation_config(models):
    """Defaults: max_length 20 means 20 new tokens; the model's generation_config feeds unset fields."""
    model = models["bart"]
    ids, mask = _prompts("bart")
    _assert_same(*_both(model, ids, mask))
    from transformers import GenerationConfig as HFGenerationConfig
    gc = HFGenerationConfig(max_new_tokens=6, num_beams=2)
    theirs = model.generate(ids, attention_mask=mask, generation_config=gc)
    assert torch.equal(theirs, generate(model, ids, attention_mask=mask, generation_config=gc))
    ours_gc = GenerationConfig(max_new_tokens=6, num_beams=2)
    assert torch.equal(theirs, generate(model, ids, attention_mask=mask, generation_config=ours_gc))


@pytest.mark.parametrize("version, use_model_defaults", [("4.40.0", None), ("4.57.6", None), ("4.40.0", True),
                                                          ("4.57.6", False)])
def test_model_defaults_fill_a_given_config(models, version, use_model_defaults):
    """A given config's default fields take the model's values only for >= 4.50 configs or when asked."""
    import copy
    from transformers import GenerationConfig as HFGenerationConfig
    model = copy.deepcopy(models["llama"])
    model.generation_config.num_beams, model.generation_config.no_repeat_ngram_size = 3, 2
    model.generation_config.transformers_version = version
    ids, mask = _prompts("llama")
    kwargs = dict(attention_mask=mask, use_model_defaults=use_model_defaults)
    theirs = model.generate(ids, generation_config=HFGenerationConfig(max_new_tokens=8), **kwargs)
    assert torch.equal(theirs, generate(model, ids, generation_config=GenerationConfig(max_new_tokens=8), **kwargs))


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(max_length=3), "max_length"),
    (dict(max_new_tokens=3, frobnicate=1), "frobnicate"),
    (dict(max_new_tokens=3, stop_strings=["x"]), "tokenizer"),
    (dict(max_new_tokens=3, num_beam_groups=2, num_beams=4), "num_beam_groups"),
    (dict(max_new_tokens=3, penalty_alpha=0.6, top_k=4), "penalty_alpha"),
    (dict(max_new_tokens=3, num_beams="4"), "num_beams"),
    (dict(max_new_tokens=3, bad_words_ids=[[99]]), "vocabulary"),
])
def test_bad_arguments_raise_clear_errors(models, kwargs, message):
    ids, mask = _prompts("gpt2")
    with pytest.raises((ValueError, NotImplementedError)) as err:
        generate(models["gpt2"], ids, attention_mask=mask, **kwargs)
    assert message in str(err.value)


def test_prompt_longer_than_context_and_beam_streamer(models):
    from leanformers.generation import TextStreamer
    long_ids = torch.randint(3, VOCAB, (1, 80))
    with pytest.raises(ValueError, match="context window"):
        generate(models["gpt2"], long_ids, max_new_tokens=2)
    with pytest.raises(ValueError, match="beam"):
        generate(models["gpt2"], long_ids[:, :5], num_beams=2, max_new_tokens=2, streamer=TextStreamer(None))


# ------------------------------------------------------------ our models, loaded from the same checkpoints
@pytest.fixture(scope="module")
def our_models(models, tmp_path_factory):
    """(oracle, ours) pairs: ours is loaded by leanformers from the oracle's save_pretrained folder."""
    from leanformers.modeling.auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM
    pairs = {}
    for name, eos_scale in (("gpt2", 1.0), ("llama", 3.0), ("bart", 1.5), ("t5", 3.0)):
        oracle = _eos_likely(models[name], 2 if name != "t5" else 1, eos_scale)
        folder = tmp_path_factory.mktemp(name)
        oracle.save_pretrained(folder)
        auto = AutoModelForSeq2SeqLM if oracle.config.is_encoder_decoder else AutoModelForCausalLM
        pairs[name] = oracle, auto.from_pretrained(folder)
    return pairs


OUR_SETTINGS = [dict(), BEAM_SETTINGS[0], BEAM_SETTINGS[1], BEAM_SETTINGS[2], dict(do_sample=True, top_k=10)]


@pytest.mark.parametrize("name", ["gpt2", "llama", "bart", "t5"])
@pytest.mark.parametrize("setting", range(len(OUR_SETTINGS)))
def test_our_models_generate_like_oracle(our_models, name, setting):
    """Our model's .generate() (generation config read from the saved folder) gives the oracle's ids."""
    oracle, ours = our_models[name]
    ids, mask = _prompts(name)
    kwargs = dict(OUR_SETTINGS[setting], max_new_tokens=10, output_scores=True, return_dict_in_generate=True)
    torch.manual_seed(11)
    theirs = oracle.generate(ids, attention_mask=mask, **kwargs)
    torch.manual_seed(11)
    mine = ours.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(theirs.sequences, mine.sequences), f"ids differ:\n{theirs.sequences}\nours:\n{mine.sequences}"
    for a, b in zip(theirs.scores, mine.scores):
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        assert (a - b).nan_to_num(0.0, 0.0, 0.0).abs().max().item() <= 1e-4


def test_generation_settings_from_config_json_alone(models, tmp_path):
    """Without generation_config.json, both read the generation fields of config.json (old checkpoints)."""
    from leanformers.modeling.auto import AutoModelForSeq2SeqLM
    import json
    _eos_likely(models["bart"], 2, 1.5).save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink()
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_beams=3, no_repeat_ngram_size=2, max_length=9, length_penalty=0.7)
    (tmp_path / "config.json").write_text(json.dumps(config))
    oracle = BartForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert oracle.generation_config.num_beams == 3
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids, mask = _prompts("bart")
    assert torch.equal(oracle.generate(ids, attention_mask=mask), ours.generate(ids, attention_mask=mask))
