"""The gaps left last round (issue 13 item 3), each against transformers 4.57.6 on tiny random checkpoints:
GPT-2 / OpenAI GPT / CTRL token_type_ids, T5EncoderModel / MT5EncoderModel, BART / mBART / Marian / Pegasus
*ForCausalLM, ProphetNet output_attentions, Transformer-XL's attention_mask."""
import logging

import pytest
import test_decoders
import torch
import transformers
from oracle import assert_close, save_tiny

import leanformers

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures("one_thread")


def _saved(theirs, tmp_path):
    return save_tiny(theirs, tmp_path / type(theirs).__name__)


@pytest.mark.parametrize("case", ["gpt2", "openai-gpt", "ctrl"])
@pytest.mark.parametrize("head", ["lm", "base", "seq"])
def test_token_type_ids_add_their_word_embeddings(case, head, tmp_path):
    """transformers' GPT-2, OpenAI GPT and CTRL embed token_type_ids with the word table (CTRL scales them too)."""
    theirs = test_decoders._oracle(case, head)
    if head == "seq":
        theirs.config.pad_token_id = 0
    ours = getattr(leanformers, type(theirs).__name__).from_pretrained(_saved(theirs, tmp_path))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, test_decoders.VOCAB, (2, 7), generator=g)
    types = torch.randint(0, 5, (2, 7), generator=g)
    with torch.no_grad():
        expected = theirs(input_ids=ids, token_type_ids=types)
        got = ours(input_ids=ids, token_type_ids=types)
        plain = ours(input_ids=ids)
    key = "last_hidden_state" if head == "base" else "logits"
    assert_close(expected, got, keys=[key], what=f"{case} {head}")
    assert (got[key] - plain[key]).abs().max() > 1e-3  # the token types changed the output


# ---------------------------------------------------------------- one half of an encoder-decoder
def _seq2seq_config(case, **overrides):
    import test_seq2seq

    config = test_seq2seq.TINY[case][2]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.mark.parametrize("name, case", [("T5EncoderModel", "t5"), ("MT5EncoderModel", "mt5-deeper-decoder"),
                                        ("T5EncoderModel", "t5-v1.1")])
def test_t5_encoder_model(name, case, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(transformers, name)(_seq2seq_config(case)).eval()
    ours = getattr(leanformers, name).from_pretrained(_saved(theirs, tmp_path))
    assert type(ours).__name__ == name
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 99, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 3:] = 0, 0
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        got = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert_close(expected, got, keys=["last_hidden_state"], what=name)
    for key in ("hidden_states", "attentions"):
        assert len(expected[key]) == len(got[key])
        for a, b in zip(expected[key], got[key]):
            assert_close({key: a}, {key: b}, what=f"{name} {key}")
    assert len(got.to_tuple()) == 3 if hasattr(got, "to_tuple") else True


CAUSAL = {"bart": "BartForCausalLM", "mbart": "MBartForCausalLM", "marian": "MarianForCausalLM",
          "pegasus": "PegasusForCausalLM"}


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    built = {}

    def get(case):
        if case not in built:
            torch.manual_seed(0)  # eager attention: the oracle's SDPA path returns no attention probabilities
            theirs = getattr(transformers, CAUSAL[case])(_seq2seq_config(  # equal depths: the oracle sizes its
                case, tie_word_embeddings=False, encoder_layers=3, num_hidden_layers=3,  # by encoder depth
                _attn_implementation="eager")).eval()
            folder = save_tiny(theirs, tmp_path_factory.mktemp(case))
            built[case] = theirs, leanformers.AutoModelForCausalLM.from_pretrained(folder)
        return built[case]
    return get


@pytest.mark.parametrize("case", sorted(CAUSAL))
def test_decoder_alone_for_causal_lm(case, causal):
    theirs, ours = causal(case)
    assert type(ours).__name__ == CAUSAL[case] and not ours.config.is_encoder_decoder
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    encoder_states = torch.randn(2, 5, 32, generator=g)
    with torch.no_grad():
        for extra in ({}, {"encoder_hidden_states": encoder_states}):
            expected = theirs(input_ids=ids, attention_mask=mask, labels=ids, output_hidden_states=True,
                              output_attentions=True, **extra)
            got = ours(input_ids=ids, attention_mask=mask, labels=ids, output_hidden_states=True,
                       output_attentions=True, **extra)
            assert_close(expected, got, keys=["logits", "loss"], what=f"{case} {list(extra)}")
            for key in ("hidden_states", "attentions") + (("cross_attentions",) if extra else ()):
                for a, b in zip(expected[key], got[key], strict=True):
                    assert_close({key: a}, {key: b}, what=f"{case} {key}")
        # the cache path: a prefix, then one token at a time, equals one full forward
        full = ours(input_ids=ids[:1]).logits
        step = ours(input_ids=ids[:1, :5], use_cache=True)
        pieces, cache = [step.logits], step.past_key_values
        for t in range(5, 8):
            step = ours(input_ids=ids[:1, t:t + 1], past_key_values=cache, use_cache=True)
            pieces.append(step.logits)
        assert (torch.cat(pieces, dim=1) - full).abs().max() < 1e-4


@pytest.mark.parametrize("case", sorted(CAUSAL))
def test_decoder_alone_generates_as_transformers(case, causal):
    theirs, ours = causal(case)
    ids = torch.tensor([[5, 6, 7, 8, 5, 6]])
    for settings in ({"do_sample": False}, {"num_beams": 3, "do_sample": False}):
        expected = theirs.generate(ids, max_new_tokens=8, min_new_tokens=8, **settings)
        assert torch.equal(ours.generate(ids, max_new_tokens=8, min_new_tokens=8, **settings), expected)
    expected = theirs.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(ours.generate(ids, max_new_tokens=8, min_new_tokens=8, prompt_lookup_num_tokens=3), expected)


def test_transfo_xl_attention_mask_as_transformers(tmp_path, monkeypatch):
    """transformers 4.57.6's Transformer-XL takes no attention_mask: its forward refuses the argument (TypeError),
    so padding is attended like any token (and its LM cannot generate() at all). Ours takes a mask that masks
    nothing (generate() passes one) and refuses padding with a clear error instead of that silent wrong answer."""
    import test_transfo_xl

    test_transfo_xl.oracle_type_as.__wrapped__(monkeypatch)  # the oracle's type_as(dtype=...) on this torch
    theirs = test_transfo_xl._oracle("TransfoXLLMHeadModel", "div2")
    ours = leanformers.TransfoXLLMHeadModel.from_pretrained(test_transfo_xl._save(theirs, tmp_path / "txl"))
    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 7, 8, 9]])
    padded = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    with pytest.raises(TypeError, match="attention_mask"):
        theirs(ids, attention_mask=padded)
    with torch.no_grad():
        assert_close(theirs(ids), ours(ids, attention_mask=torch.ones_like(ids)), keys=["prediction_scores"])
    with pytest.raises(ValueError, match="padding"):
        ours(ids, attention_mask=padded)
    with pytest.raises(ValueError, match="padding"):
        ours.generate(ids, attention_mask=padded, max_new_tokens=4, do_sample=False, pad_token_id=0)
