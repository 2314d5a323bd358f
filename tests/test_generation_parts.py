"""The parts of generation against transformers 4.57.6: processors on random scores, GenerationConfig loading,
stop strings and streamers (with the real GPT-2 vocabulary)."""
from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from leanformers.generation import GenerationConfig, TextIteratorStreamer, TextStreamer, generate
from leanformers.generation.processors import apply_processors, build_processors

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", category=UserWarning)
MODELS = Path(__file__).resolve().parents[1] / ".models"
GPT2_VOCAB = MODELS / "gpt2_vocab"


# ------------------------------------------------------------ processors
PROCESSOR_SETTINGS = [
    dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.8),
    dict(do_sample=True, top_k=0, min_p=0.05, temperature=1.3),
    dict(do_sample=True, typical_p=0.7, top_k=0),
    dict(do_sample=True, epsilon_cutoff=3e-3, top_k=0),
    dict(do_sample=True, eta_cutoff=3e-3, top_k=0),
    dict(do_sample=True, num_beams=3, top_k=5, top_p=0.5, eos_token_id=[2, 3]),
    dict(repetition_penalty=1.4, no_repeat_ngram_size=2, bad_words_ids=[[7], [4, 5], [2]]),
    dict(min_length=40, min_new_tokens=3, suppress_tokens=[0, 9], begin_suppress_tokens=[11]),
    dict(forced_eos_token_id=3, max_length=21, remove_invalid_values=True, renormalize_logits=True),
    dict(exponential_decay_length_penalty=(1, 1.2), encoder_no_repeat_ngram_size=2,
         encoder_repetition_penalty=1.3),
]


def _oracle_processors(settings, prompt_length, encoder_input_ids):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=8, n_embd=8, n_layer=1, n_head=1))
    gc = transformers.GenerationConfig(**{"eos_token_id": 2, **settings})
    model._prepare_special_tokens(gc, device="cpu")
    return model._get_logits_processor(gc, input_ids_seq_length=prompt_length, encoder_input_ids=encoder_input_ids,
                                       device="cpu"), gc._eos_token_tensor


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("settings", PROCESSOR_SETTINGS)
def test_processors_equal_oracle_on_random_scores(settings, inplace):
    """The probability vectors after our processors equal transformers' LogitsProcessorList within 1e-5, whether
    the bans copy the scores or write into them (as generate() lets them when it owns the scores)."""
    g = torch.Generator().manual_seed(0)
    vocab, rows = 50, 6
    encoder_input_ids = torch.randint(0, vocab, (2, 9), generator=g)
    theirs_list, eos = _oracle_processors(settings, 8, encoder_input_ids)
    ours_list = build_processors(GenerationConfig(**{"eos_token_id": 2, **settings}), 8, eos, encoder_input_ids,
                                 inplace=inplace)
    assert len(ours_list) == len(theirs_list) > 0
    for length in (1, 3, 8, 12, 20):
        input_ids = torch.randint(0, 12, (rows, length), generator=g)
        scores = torch.randn(rows, vocab, generator=g) * 3
        scores[0, 5] = float("nan") if settings.get("remove_invalid_values") else scores[0, 5]
        theirs = theirs_list(input_ids, scores.clone())
        given = scores.clone()
        ours = apply_processors(ours_list, input_ids, given)
        if not inplace:
            assert torch.equal(given.nan_to_num(), scores.nan_to_num()), "a processor wrote into the given scores"
        assert torch.equal(torch.isneginf(theirs), torch.isneginf(ours)), f"length {length}: masks differ"
        diff = (theirs.softmax(-1) - ours.softmax(-1)).abs().nan_to_num(0.0).max().item()
        assert diff <= 1e-5, f"length {length}: probabilities differ by {diff}"


def test_processor_argument_errors():
    with pytest.raises(ValueError, match="bad_words_ids"):
        build_processors(GenerationConfig(bad_words_ids=[5]), 3, None)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        build_processors(GenerationConfig(no_repeat_ngram_size=-1), 3, None)


# ------------------------------------------------------------ GenerationConfig
def test_generation_config_defaults_match_oracle():
    ours, theirs = GenerationConfig().to_dict(), transformers.GenerationConfig().to_dict()
    for name, value in ours.items():
        if name in theirs and name != "transformers_version":
            assert theirs[name] == value, name


def test_from_model_config_and_from_pretrained(tmp_path):
    from transformers import BartConfig
    hf_config = BartConfig(vocab_size=40, d_model=16, max_length=33, num_beams=3, no_repeat_ngram_size=3,
                           forced_bos_token_id=0)
    hf_config.save_pretrained(tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    theirs = transformers.GenerationConfig.from_model_config(hf_config)
    ours = GenerationConfig.from_model_config(d)
    for name in ("max_length", "num_beams", "no_repeat_ngram_size", "forced_bos_token_id", "forced_eos_token_id",
                 "decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "early_stopping"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert not hasattr(ours, "d_model")  # model fields do not leak into the generation config

    theirs.save_pretrained(tmp_path)
    loaded = GenerationConfig.from_pretrained(tmp_path)
    assert loaded.num_beams == 3 and loaded.max_length == 33
    assert GenerationConfig.for_model(d, tmp_path).num_beams == 3
    ours.save_pretrained(tmp_path / "ours")
    again = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
    assert again.num_beams == 3 and again.no_repeat_ngram_size == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="generation_config.json"):
        GenerationConfig.from_pretrained(tmp_path / "empty")


def test_update_returns_unused_and_validates():
    gc = GenerationConfig()
    assert gc.update(max_new_tokens=5, attention_mask=1) == {"attention_mask": 1}
    assert gc.max_new_tokens == 5
    with pytest.raises(ValueError, match="max_new_tokens"):
        gc.update(max_new_tokens=0)
    with pytest.raises(ValueError, match="streamer"):
        GenerationConfig(streamer=object())


# ------------------------------------------------------------ stop strings and streamers
@pytest.fixture(scope="module")
def gpt2_with_vocab():
    tokenizer = transformers.GPT2TokenizerFast(vocab_file=str(GPT2_VOCAB / "vocab.json"),
                                               merges_file=str(GPT2_VOCAB / "merges.txt"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                       n_positions=64)).eval()
    return model, tokenizer


def test_stop_strings_match_oracle(gpt2_with_vocab):
    model, tokenizer = gpt2_with_vocab
    ids = tokenizer(["Hello world, this is"], return_tensors="pt")["input_ids"]
    free = model.generate(ids, max_new_tokens=25, do_sample=False)
    text_tokens = [tokenizer.decode(t) for t in free[0, ids.shape[1]:]]
    # stop strings cut from the free-running text: a whole token, a piece across tokens, and an unseen one
    joined = "".join(text_tokens)
    candidates = [text_tokens[4].strip() or text_tokens[4], joined[7:11], "zzzq"]
    for stops in ([candidates[0]], candidates[1], candidates):
        theirs = model.generate(ids, max_new_tokens=25, stop_strings=stops, tokenizer=tokenizer)
        ours = generate(model, ids, max_new_tokens=25, stop_strings=stops, tokenizer=tokenizer)
        assert torch.equal(theirs, ours), stops


def _collect(streamer_cls, tokenizer, tokens, **kwargs):
    pieces = []

    class Recording(streamer_cls):
        def on_finalized_text(self, text, stream_end=False):
            pieces.append((text, stream_end))

    streamer = Recording(tokenizer, **kwargs)
    streamer.put(torch.tensor([tokens[:3]]))
    for token in tokens[3:]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    return pieces


@pytest.mark.parametrize("skip_prompt", [False, True])
def test_text_streamer_pieces_match_oracle(gpt2_with_vocab, skip_prompt):
    _, tokenizer = gpt2_with_vocab
    text = "The café serves 北京烤鸭 daily.\nNew line here, and then some more words"
    tokens = tokenizer(text)["input_ids"]
    ours = _collect(TextStreamer, tokenizer, tokens, skip_prompt=skip_prompt)
    theirs = _collect(transformers.TextStreamer, tokenizer, tokens, skip_prompt=skip_prompt)
    assert ours == theirs
    assert "".join(p for p, _ in ours) == (tokenizer.decode(tokens[3:]) if skip_prompt else text)


def test_iterator_streamer_with_generate(gpt2_with_vocab):
    model, tokenizer = gpt2_with_vocab
    ids = tokenizer(["Once upon a time"], return_tensors="pt")["input_ids"]
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=60)
    result = {}
    worker = threading.Thread(target=lambda: result.update(ids=generate(model, ids, max_new_tokens=12,
                                                                           streamer=streamer)))
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert "".join(pieces) == tokenizer.decode(result["ids"][0, ids.shape[1]:])
    assert len(pieces) > 1


def test_text_streamer_prints(gpt2_with_vocab, capsys):
    model, tokenizer = gpt2_with_vocab
    ids = tokenizer(["A B C"], return_tensors="pt")["input_ids"]
    out = generate(model, ids, max_new_tokens=6, streamer=TextStreamer(tokenizer))
    assert capsys.readouterr().out == tokenizer.decode(out[0]) + "\n"


def test_import_does_not_load_torch():
    import subprocess
    import sys
    code = "import sys, leanformers.generation as g; g.GenerationConfig(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_greedy_pick_is_argmax_with_ties_and_nan():
    """Greedy takes max(dim).indices (a third of argmax's CPU time): the same first maximal index, NaN included."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randint(0, 3, (16, 5000), generator=g).float()
        scores[seed % 16, seed * 7] = float("nan")
        scores[(seed + 1) % 16] = float("-inf")
        assert torch.equal(scores.max(dim=-1).indices, torch.argmax(scores, dim=-1))
