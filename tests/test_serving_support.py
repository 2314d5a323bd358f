"""Builders shared by the test_serving* modules (no tests here): tiny random checkpoints with real vocabularies and a
real uvicorn server on 127.0.0.1 in a thread, started and stopped by the fixtures that use it."""
from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time

import httpx
import pytest
import torch
import transformers
from oracle import MODELS

GPT2_VOCAB = MODELS / "gpt2_vocab"
MINILM = MODELS / "minilm"
SMOLLM2 = MODELS / "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}


def tiny_causal_lm(folder, kind: str = "llama", positions: int = 256, seed: int = 0) -> str:
    """A tiny random Llama (rotary, grouped KV heads) or GPT-2 (learned positions) with the real GPT-2 vocabulary
    and a chat template; eos = 50256 (<|endoftext|>)."""
    torch.manual_seed(seed)
    if kind == "llama":
        config = transformers.LlamaConfig(vocab_size=50257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=positions, bos_token_id=50256, eos_token_id=50256,
                                          initializer_range=0.5)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=positions,
                                         initializer_range=0.5)
        model = transformers.GPT2LMHeadModel(config)
    model.eval().save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_VOCAB / name, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": positions, "chat_template": CHAT_TEMPLATE}))
    return str(folder)


def tiny_bert(folder, head: str, seed: int = 0, **config) -> str:
    """A tiny random BERT with a head (ForTokenClassification, ...) and the real MiniLM tokenizer files."""
    hf_config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=37, max_position_embeddings=512, initializer_range=0.3,
                                        **config)
    torch.manual_seed(seed)
    getattr(transformers, f"Bert{head}")(hf_config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(MINILM / name, folder / name)
    return str(folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app, timeout: float = 120.0):
    """A real uvicorn server for `app` on 127.0.0.1:<free port>, in a thread; yields its base URL; always stopped."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server at {base} did not become healthy")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def tiny_t5(folder, seed: int = 1) -> str:
    """A tiny random T5 with a real SentencePiece model and task_specific_params (summarization, en->de)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / "spm" / "botchan_en_unigram_1000.model", folder / "spiece.model")
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    params = {"summarization": {"prefix": "summarize: ", "max_length": 12, "min_length": 3, "num_beams": 2},
              "translation_en_to_de": {"prefix": "translate English to German: ", "max_length": 10}}
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, initializer_factor=3.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0,
        task_specific_params=params))
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer",
                                                              "model_max_length": 64}))
    return str(folder)


ARTIFACTS = MODELS.parent / "test-artifacts" / "serving"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page():
    """A page in Debian's headless Chromium driven by Playwright (no browser download); always closed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            yield page
        finally:
            browser.close()


def assert_same(got, expected, where="result"):
    """Equal structure, strings and ints; floats within 1e-5 (a micro-batch pads, as pipelines' own batches do)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), where
    else:
        assert got == expected, where
