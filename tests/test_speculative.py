"""Assisted (speculative) decoding: prompt lookup and assistant models give plain decoding's ids for every decoder
and encoder-decoder family, equal to transformers 4.57.6's own assisted generate(); sampling keeps the target's
distribution (exact per-step check of the acceptance rule, and a bounded, seeded chi-square over two tokens)."""
import logging

import pytest
import test_decoders
import test_seq2seq
import torch
import transformers
from oracle import save_tiny

import leanformers
from leanformers.generation import generate
from leanformers.generation.assisted import speculative_sampling

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures("one_thread")

DECODERS = test_decoders.ARCHITECTURES
SEQ2SEQ = [case for case in test_seq2seq.GENERATE if case != "marian-own-target-vocab"]
NEW = 24


def _tiny(module, case, **overrides):
    """(oracle LM, our LM loaded from its saved checkpoint) for a case of test_decoders / test_seq2seq."""
    prefix, lm, make_config = module.TINY[case]
    config = make_config()
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    theirs = getattr(transformers, prefix + lm)(config).eval()
    return theirs, prefix + lm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cache = {}

    def get(module, case, **overrides):
        key = (module.__name__, case, tuple(sorted(overrides.items())))
        if key not in cache:
            theirs, name = _tiny(module, case, **overrides)
            folder = save_tiny(theirs, tmp_path_factory.mktemp(case))
            cache[key] = theirs, getattr(leanformers, name).from_pretrained(folder)
        return cache[key]
    return get


class _Calls:
    """Counts a model's forward calls (to show that drafts were accepted: fewer calls than tokens)."""

    def __init__(self, model):
        self.count = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.count += 1


def _copying_prompt(model, length=8, seed=3, **settings):
    """A prompt that holds what greedy decoding will write next: random ids, the model's own greedy continuation of
    them, then the random ids again (an input-grounded prompt for a random model)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(3, 90, (1, length), generator=g)
    continuation = model.generate(start, max_new_tokens=NEW, do_sample=False, **settings)[:, length:]
    return torch.cat([start, continuation, start], dim=1)


@pytest.mark.parametrize("case", DECODERS)
def test_decoder_prompt_lookup_and_assistant_equal_plain_greedy(case, pair):
    theirs, ours = pair(test_decoders, case)
    _, small = pair(test_decoders, case, num_hidden_layers=1)  # the same vocabulary, one layer: a weak drafter
    ids = _copying_prompt(theirs, pad_token_id=0)
    settings = {"max_new_tokens": NEW, "do_sample": False, "pad_token_id": 0}
    expected = theirs.generate(ids, **settings)
    assert torch.equal(ours.generate(ids, **settings), expected)
    calls = _Calls(ours)
    got = ours.generate(ids, prompt_lookup_num_tokens=5, **settings)
    assert torch.equal(got, expected), f"{case} prompt lookup: {got.tolist()} != {expected.tolist()}"
    assert calls.count < NEW // 2, f"{case}: {calls.count} forward calls for {NEW} tokens: drafts were not accepted"
    # transformers' own prompt lookup: the same ids (it may run past max_new_tokens: compare the common length);
    # without an eos id (CTRL, OpenAI GPT) its lookup fails in torch.isin(ids, None), a bug of 4.57.6
    if theirs.generation_config.eos_token_id is not None:  # (fewer tokens: its overshoot stays in the positions)
        hf = theirs.generate(ids, prompt_lookup_num_tokens=5, **{**settings, "max_new_tokens": NEW - 5})
        assert hf.shape[1] >= got.shape[1] - 5 and torch.equal(hf[:, :got.shape[1] - 5], got[:, :-5])
    for assistant in (small, ours):  # a weak drafter (many rejections) and a perfect one (every draft accepted)
        assert torch.equal(ours.generate(ids, assistant_model=assistant, **settings), expected), case
    if case != "openai-gpt":  # transformers' OpenAI GPT has no cache: its assisted generate() fails
        assert torch.equal(theirs.generate(ids, assistant_model=pair(test_decoders, case, num_hidden_layers=1)[0],
                                           **settings), expected)


@pytest.mark.parametrize("case", SEQ2SEQ)
def test_seq2seq_prompt_lookup_and_assistant_equal_plain_greedy(case, pair):
    varied = test_seq2seq._VARIED.get(case, {"tie_word_embeddings": False})
    theirs, ours = pair(test_seq2seq, case, **varied)
    small_theirs, small = pair(test_seq2seq, case, decoder_layers=1, num_decoder_layers=1, **varied)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(4, 90, (1, 11), generator=g)
    settings = {"max_new_tokens": NEW, "do_sample": False}
    expected = theirs.generate(ids, **settings)
    assert torch.equal(ours.generate(ids, **settings), expected)
    for kwargs in ({"prompt_lookup_num_tokens": 3, "max_matching_ngram_size": 1}, {"assistant_model": small},
                   {"assistant_model": ours}):
        got = ours.generate(ids, **kwargs, **settings)
        assert torch.equal(got, expected), f"{case} {list(kwargs)}: {got.tolist()} != {expected.tolist()}"
    hf = theirs.generate(ids, assistant_model=small_theirs, **settings)
    assert torch.equal(hf, expected)


def test_eos_stop_strings_and_processors_inside_an_accepted_run(pair):
    """Stops and processors apply per token, as in plain decoding: an eos or max_length inside a run of accepted
    drafts ends the sequence there; repetition penalty and min_new_tokens see each position's own prefix."""
    theirs, ours = pair(test_decoders, "gpt2")
    ids = _copying_prompt(theirs, pad_token_id=0)
    for settings in ({"max_new_tokens": 7}, {"max_new_tokens": NEW, "eos_token_id": int(ids[0, 12])},
                     {"max_new_tokens": NEW, "repetition_penalty": 1.3, "min_new_tokens": 10},
                     {"max_new_tokens": NEW, "no_repeat_ngram_size": 3}):
        expected = ours.generate(ids, pad_token_id=0, **settings)
        for drafted in ({"prompt_lookup_num_tokens": 10}, {"assistant_model": ours}):
            got = ours.generate(ids, pad_token_id=0, **drafted, **settings)
            assert torch.equal(got, expected), f"{settings} {list(drafted)}: {got.tolist()} != {expected.tolist()}"
    out = ours.generate(ids, pad_token_id=0, max_new_tokens=6, prompt_lookup_num_tokens=4, output_scores=True,
                        output_logits=True, return_dict_in_generate=True)
    plain = ours.generate(ids, pad_token_id=0, max_new_tokens=6, output_scores=True, output_logits=True,
                          return_dict_in_generate=True)
    assert len(out.scores) == len(out.logits) == 6
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(out.scores, plain.scores))


def test_errors_and_beam_search(pair, caplog):
    theirs, ours = pair(test_decoders, "gpt2")
    ids = torch.tensor([[5, 6, 7, 5, 6], [8, 9, 10, 8, 9]])
    with pytest.raises(ValueError, match="batch_size = 1"):
        ours.generate(ids, prompt_lookup_num_tokens=3, pad_token_id=0)
    with pytest.raises(ValueError, match="use_cache"):
        ours.generate(ids[:1], prompt_lookup_num_tokens=3, use_cache=False)
    with pytest.raises(ValueError, match="num_return_sequences"):
        ours.generate(ids[:1], prompt_lookup_num_tokens=3, do_sample=True, num_return_sequences=2)
    with pytest.raises(ValueError, match="positive"):
        ours.generate(ids[:1], prompt_lookup_num_tokens=0)
    _, bart = pair(test_seq2seq, "bart", tie_word_embeddings=False)
    with pytest.raises(ValueError, match="same kind"):
        bart.generate(ids[:1], assistant_model=ours)
    other_vocab = leanformers.GPT2LMHeadModel.from_config(leanformers.AutoConfig.for_model(
        "gpt2", vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="vocabularies"):
        ours.generate(ids[:1], assistant_model=other_vocab)
    with caplog.at_level(logging.WARNING, logger="leanformers"):  # beam search ignores the drafter, as transformers
        beams = ours.generate(ids[:1], num_beams=2, prompt_lookup_num_tokens=3, max_new_tokens=5, pad_token_id=0)
    assert torch.equal(beams, theirs.generate(ids[:1], num_beams=2, max_new_tokens=5, pad_token_id=0))
    assert "ignored" in caplog.text


def test_models_whose_cache_cannot_roll_back(tmp_path):
    config = transformers.TransfoXLConfig(vocab_size=40, cutoffs=[10, 20], d_model=16, d_embed=16, n_head=2,
                                          d_head=8, d_inner=32, n_layer=1, mem_len=8, div_val=1)
    torch.manual_seed(0)
    transformers.TransfoXLLMHeadModel(config).save_pretrained(tmp_path)
    model = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Transformer-XL"):
        model.generate(torch.tensor([[5, 6, 7, 5, 6]]), prompt_lookup_num_tokens=3, max_new_tokens=4)


def test_speculative_sampling_keeps_the_target_distribution():
    """One draft token from q, Leviathan's rule against p: the first emitted token is distributed as p (exactly,
    up to sampling noise over 40k seeded draws), whatever q is."""
    g = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.tensor([2.0, 0.5, 0.0, -1.0, 1.0]), torch.tensor([-1.0, 2.0, 1.0, 0.0, 0.3])
    q = torch.softmax(q_logits, -1)
    counts = torch.zeros(5)
    draws = 40_000
    for _ in range(draws):
        draft = torch.multinomial(q, 1, generator=g).view(1, 1)
        scores = torch.stack([p_logits, torch.zeros(5)])[None]  # (1, k + 1, V)
        tokens, _ = speculative_sampling(draft, q_logits.view(1, 1, 5), scores, g)
        counts[tokens[0, 0]] += 1
    p = torch.softmax(p_logits, -1)
    assert (counts / draws - p).abs().max() < 0.01, (counts / draws, p)
    assert (q - p).abs().max() > 0.2  # q differs from p: the rule, not luck, made the counts match p


def _two_token_distribution(model, ids):
    """The exact plain-sampling distribution of the next two tokens, (V * V,)."""
    with torch.no_grad():
        first = torch.softmax(model(ids).logits[0, -1], -1)
        vocab = first.shape[0]
        both = torch.cat([ids.repeat(vocab, 1), torch.arange(vocab)[:, None]], dim=1)
        second = torch.softmax(model(both).logits[:, -1], -1)  # (V, V)
    return (first[:, None] * second).view(-1)


def _chi_square(counts, expected_probs, draws) -> float:
    expected = expected_probs * draws
    keep = expected > 5
    rest = (counts[~keep].sum() - expected[~keep].sum()) ** 2 / max(float(expected[~keep].sum()), 1e-9)
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum() + rest), int(keep.sum())


def test_assisted_sampling_matches_plain_sampling_on_a_tiny_vocabulary():
    """Two new tokens over a 6-token vocabulary (36 outcomes), 1500 seeded draws each way: the assistant drafts from
    a very different distribution, yet the assisted samples fit the target's exact distribution (chi-square below
    the 0.1% critical value), while samples taken from the assistant alone are rejected by the same test."""
    vocab = 6
    config = {"vocab_size": vocab, "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16, "initializer_range": 0.5}
    torch.manual_seed(1)
    # from_config gives train() mode, as in transformers: eval() turns GPT-2's default dropout off
    target = leanformers.GPT2LMHeadModel.from_config(leanformers.AutoConfig.for_model("gpt2", **config)).eval()
    torch.manual_seed(2)
    assistant = leanformers.GPT2LMHeadModel.from_config(leanformers.AutoConfig.for_model("gpt2", **config)).eval()
    ids = torch.tensor([[1, 2, 3]])
    p = _two_token_distribution(target, ids)
    q = _two_token_distribution(assistant, ids)
    draws, g = 1500, torch.Generator().manual_seed(0)
    settings = {"do_sample": True, "top_k": 0, "max_new_tokens": 2, "min_new_tokens": 2, "pad_token_id": 0,
                "generator": g}
    observed = {"assisted": torch.zeros(vocab * vocab), "lookup": torch.zeros(vocab * vocab),
                "assistant alone": torch.zeros(vocab * vocab)}
    lookup_ids = torch.tensor([[1, 2, 3, 1, 2, 3]])
    p_lookup = _two_token_distribution(target, lookup_ids)
    for _ in range(draws):
        a, b = generate(target, ids, assistant_model=assistant, **settings)[0, 3:].tolist()
        observed["assisted"][a * vocab + b] += 1
        a, b = generate(target, lookup_ids, prompt_lookup_num_tokens=2, **settings)[0, 6:].tolist()
        observed["lookup"][a * vocab + b] += 1
        a, b = generate(assistant, ids, **settings)[0, 3:].tolist()
        observed["assistant alone"][a * vocab + b] += 1
    critical = {k: 20.5 + 1.66 * k for k in range(1, 37)}  # ~ chi2.ppf(0.999, k) for k <= 36 (upper bound)
    stat, cells = _chi_square(observed["assisted"], p, draws)
    assert stat < critical[cells], f"assisted sampling: chi-square {stat:.1f} over {cells} cells"
    stat, cells = _chi_square(observed["lookup"], p_lookup, draws)
    assert stat < critical[cells], f"prompt-lookup sampling: chi-square {stat:.1f} over {cells} cells"
    stat, cells = _chi_square(observed["assistant alone"], p, draws)
    assert stat > 10 * critical[cells], f"control: the assistant's own samples fit the target ({stat:.1f})"
    assert (p - q).abs().sum() > 0.5


def test_pipeline_and_cli_pass_the_options(pair, tmp_path, capsys):
    from leanformers.cli import main

    theirs, _ = pair(test_decoders, "gpt2")
    folder = save_tiny(theirs, tmp_path / "gpt2")
    tokenizer_folder = tmp_path / "gpt2"
    vocab = {chr(ord("a") + i): i for i in range(26)}
    vocab.update({f"t{i}": i for i in range(26, 97)})
    import json
    (tokenizer_folder / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer_folder / "merges.txt").write_text("#version: 0.2\n")
    generator = leanformers.pipeline("text-generation", model=folder)
    text = "abcdefghabcdefgh"
    plain = generator(text, max_new_tokens=10, do_sample=False)
    assert generator(text, max_new_tokens=10, do_sample=False, prompt_lookup_num_tokens=4) == plain
    assistant = leanformers.AutoModelForCausalLM.from_pretrained(folder)
    assert generator(text, max_new_tokens=10, do_sample=False, assistant_model=assistant) == plain
    assert generator([text, text[:-1]], max_new_tokens=10, do_sample=False, prompt_lookup_num_tokens=4) == [
        plain, generator(text[:-1], max_new_tokens=10, do_sample=False)]  # prompts go one at a time
    built = leanformers.pipeline("text-generation", model=folder, assistant_model=folder, max_new_tokens=10,
                                 do_sample=False, batch_size=4)  # transformers' construction option, a path here
    assert built(text) == plain
    main(["text-generation", text, "--model", folder, "--option", "max_new_tokens=10", "--option", "do_sample=false",
          "--option", "prompt_lookup_num_tokens=4"])
    assert plain[0]["generated_text"] in capsys.readouterr().out
