"""text-generation (and the seq2seq pipelines) next to transformers 4.57.6's pipelines on tiny random checkpoints
with the real GPT-2 vocabulary: identical generated texts and token ids, batched (left-padded) = one by one."""
from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
import transformers

import leanformers
from oracle import MODELS

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

GPT2_VOCAB = MODELS / "gpt2_vocab"
PROMPTS = ["Hello, my dog is", "The capital of France", "Once upon a time there was a very long", "A"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
needs_vocab = pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/fetch_models.sh")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny random GPT-2 (real 50257-token vocabulary, 128 positions) with a chat template."""
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                     initializer_range=0.5)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_VOCAB / name, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 128, "chat_template": CHAT_TEMPLATE}))
    folder = str(folder)
    return folder, transformers.pipeline("text-generation", model=folder), \
        leanformers.pipeline("text-generation", model=folder), \
        leanformers.pipeline("text-generation", model=folder, batch_size=3)


@needs_vocab
@pytest.mark.parametrize("call", [
    {"do_sample": False, "max_new_tokens": 8},
    {"do_sample": False, "max_new_tokens": 5, "num_beams": 3, "num_return_sequences": 2},
    {"do_sample": False, "max_new_tokens": 4, "return_full_text": False},
    {"do_sample": False, "max_new_tokens": 4, "return_tensors": True},
    {"do_sample": False, "max_new_tokens": 6, "prefix": "In short: "},
    {"do_sample": False, "max_new_tokens": 9, "stop_sequence": " fourteen"},
    {"do_sample": False, "max_new_tokens": 6, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
])
def test_text_generation(gpt2, call):
    _, theirs, ours, batched = gpt2
    assert ours(PROMPTS[0], **call) == theirs(PROMPTS[0], **call)
    expected = theirs(PROMPTS, **call)
    assert ours(PROMPTS, **call) == expected
    assert batched(PROMPTS, **call) == expected  # left-padded groups of 3


@needs_vocab
def test_text_generation_sampling_chat_and_stream(gpt2):
    _, theirs, ours, _ = gpt2
    call = {"max_new_tokens": 6, "do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8}
    for prompt in PROMPTS[:2]:  # single prompts: transformers' list path draws a DataLoader seed from the RNG first
        torch.manual_seed(3)
        expected = theirs(prompt, **call)
        torch.manual_seed(3)
        assert ours(prompt, **call) == expected
    chat = [{"role": "user", "content": "Hi there"}]
    continued = chat + [{"role": "assistant", "content": "Well"}]
    for messages in (chat, continued):
        assert ours(messages, do_sample=False, max_new_tokens=5) == theirs(messages, do_sample=False, max_new_tokens=5)
    assert ours([chat, continued], do_sample=False, max_new_tokens=3) == \
        theirs([chat, continued], do_sample=False, max_new_tokens=3)
    assert list(ours((p for p in PROMPTS), do_sample=False, max_new_tokens=3)) == \
        theirs(PROMPTS, do_sample=False, max_new_tokens=3)


@needs_vocab
def test_text_generation_defaults_and_errors(gpt2):
    folder, theirs, ours, _ = gpt2
    assert ours.generation_config.max_new_tokens == 256 and ours.generation_config.do_sample
    assert ours.generation_config.temperature == 0.7
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours(PROMPTS[0], max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        ours(PROMPTS[0], temperature=0.0, do_sample=True)
    with pytest.raises(ValueError, match="top_p"):
        ours(PROMPTS[0], top_p=1.5, do_sample=True)
    with pytest.raises(ValueError, match="num_return_sequences"):
        ours(PROMPTS[0], do_sample=False, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="context window is 128"):
        ours("word " * 200, max_new_tokens=2)
    assert ours("word " * 200, max_new_tokens=2, do_sample=False, handle_long_generation="hole") == \
        theirs("word " * 200, max_new_tokens=2, do_sample=False, handle_long_generation="hole")
    encoder = leanformers.AutoModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="ForCausalLM"):
        leanformers.pipeline("text-generation", model=encoder, tokenizer=folder)
