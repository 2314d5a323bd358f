"""The gaps left last round (issue 13 item 3), each against transformers 4.57.6 on tiny random checkpoints:
GPT-2 / OpenAI GPT / CTRL token_type_ids, T5EncoderModel / MT5EncoderModel, BART / mBART / Marian / Pegasus
*ForCausalLM, ProphetNet output_attentions, Transformer-XL's attention_mask."""
import logging

import pytest
import torch
import transformers

import leanformers
import test_decoders
from oracle import assert_close, save_tiny

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
