"""The real SmolLM2-135M-Instruct (GGUF Q4_1) end to end: loaded with AutoModelForCausalLM(gguf_file=...), it answers
the chat question, and its logits and greedy tokens equal transformers' Llama on the same dequantized weights."""
import logging
from pathlib import Path

import pytest
import torch
import transformers

import leanformers
from leanformers.gguf import load_gguf
from leanformers.tokenization import Tokenizer
from oracle import max_diff

SMOLLM2 = Path(__file__).parents[1] / ".models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run scripts/fetch_models.sh for the SmolLM2 GGUF")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def smollm2():
    """(our model, our tokenizer, the oracle's Llama holding the same dequantized weights)."""
    ours = leanformers.AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    checkpoint = load_gguf(SMOLLM2)
    tokenizer = leanformers.AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    direct = Tokenizer(checkpoint.tokenizer_object, **checkpoint.tokenizer_config)
    assert tokenizer.chat_template == direct.chat_template and tokenizer("Paris, France")["input_ids"] == \
        direct("Paris, France")["input_ids"]
    theirs = transformers.LlamaForCausalLM(transformers.LlamaConfig(**checkpoint.config)).eval()
    missing, unexpected = theirs.load_state_dict(checkpoint.state_dict, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected  # the head is tied to the embeddings
    theirs.tie_weights()
    return ours, tokenizer, theirs


def test_loads_as_llama_with_its_generation_config(smollm2):
    ours, _, theirs = smollm2
    assert type(ours).__name__ == "LlamaForCausalLM"
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"]
    assert ours.head.decoder.weight is ours.model.embeddings.word.weight  # tied, as the file has no output.weight
    assert ours.generation_config.eos_token_id == theirs.generation_config.eos_token_id == 2


def test_chat_answer_and_oracle_parity(smollm2):
    ours, tokenizer, theirs = smollm2
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        assert max_diff(theirs(ids).logits, ours(ids).logits) <= 1e-4
    got = ours.generate(ids, max_new_tokens=16)
    expected = theirs.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16)
    assert torch.equal(got, expected)
    assert tokenizer.decode(got[0, ids.shape[1]:], skip_special_tokens=True) == "The capital of France is Paris."


def test_batched_left_padded_chat_equals_alone(smollm2):
    """Two chats of different lengths in one left-padded batch give each one's greedy answer."""
    ours, tokenizer, _ = smollm2
    chats = [QUESTION, [{"role": "user", "content": "Name a colour."}]]
    prompts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True) for chat in chats]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batched = ours.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
    for row, prompt in zip(batched, prompts):
        alone = ours.generate(torch.tensor([prompt]), max_new_tokens=4, pad_token_id=0)[0, len(prompt):]
        assert row[width:width + len(alone)].tolist() == alone.tolist()
