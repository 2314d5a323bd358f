"""Quantized modes on the real shipped models, with their quality bounds against float32:
- MiniLM int8: embeddings cosine >= 0.99 to fp32, the three similarity figures within 0.02 of 0.755 / 0.689 / 0.009,
  and a MiniLM spam classifier's labels equal fp32's on >= 99% of 256 mails;
- SmolLM2 (GGUF Q4_1) kept quantized answers "The capital of France is Paris."; perplexity on a fixed slice of
  botchan.txt within 1% of fp32 for int8-weight and within 5% for int4-weight and the GGUF kept quantized
  (fp32 = the dequantized GGUF weights)."""
import logging
import sys
from pathlib import Path

import pytest
import torch

import leanformers
from leanformers.modeling import quant

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from quant_quality import SMOLLM2, botchan_ids, perplexity

MODELS = Path(__file__).resolve().parents[1] / ".models"
MINILM = MODELS / "minilm"
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
             "The stock market crashed today."]
pytestmark = pytest.mark.usefixtures("one_thread")
logging.getLogger("leanformers").setLevel(logging.ERROR)


def mean_pooled(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_minilm_int8_embeddings_and_similarities():
    tokenizer = leanformers.AutoTokenizer.from_pretrained(MINILM)
    fp32 = mean_pooled(leanformers.AutoModel.from_pretrained(MINILM), tokenizer, SENTENCES)
    model = leanformers.AutoModel.from_pretrained(MINILM, quantization="int8")
    assert all(isinstance(m, quant.Int8DynamicLinear) for m in model.modules()
               if type(m).__name__.endswith("Linear")) and model.quantization_report["quantized"]
    int8 = mean_pooled(model, tokenizer, SENTENCES)
    assert (int8 * fp32).sum(-1).min().item() >= 0.99
    similarity = (int8[0] @ int8[1:].T).tolist()
    for got, expected in zip(similarity, [0.755, 0.689, 0.009]):
        assert abs(got - expected) <= 0.02, similarity


def spam_texts(count: int) -> tuple[list[str], list[int]]:
    """`count` SpamAssassin mails (subject + start of the body), half ham and half spam, in a fixed order."""
    import email
    import json

    texts, labels = [], []
    for label, group in ((0, "easy-ham-1"), (1, "spam-1")):
        for path in sorted((MODELS / "spam" / group).glob("*.json"))[:count // 2]:
            message = email.message_from_string(json.loads(path.read_text(encoding="latin-1"))["text"])
            body = next((part.get_payload(decode=True) for part in message.walk()
                         if part.get_content_type() == "text/plain"), b"") or b""
            texts.append(f"{message.get('subject', '')}. {body.decode('latin-1', errors='replace')[:400]}")
            labels.append(label)
    return texts, labels


def logits_of(model, tokenizer, texts):
    with torch.no_grad():
        return torch.cat([model(**tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=128,
                                            return_tensors="pt")).logits for i in range(0, len(texts), 32)])


def test_minilm_classifier_int8_labels_equal_fp32_on_256_mails():
    """A spam classifier on the real MiniLM: its 2-label head fit (logistic regression on the fp32 pooler output)
    on 128 mails; the int8 model's labels on 256 other mails equal fp32's on >= 99%."""
    tokenizer = leanformers.AutoTokenizer.from_pretrained(MINILM)
    texts, labels = spam_texts(384)
    train = [i % 3 == 0 for i in range(len(texts))]
    fp32 = leanformers.AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=2)
    features = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            batch = tokenizer([t for t, keep in zip(texts, train) if keep][i:i + 32], padding=True, truncation=True,
                              max_length=128, return_tensors="pt")
            if batch["input_ids"].shape[0]:
                features.append(fp32.model(**batch).pooler_output)
    features, targets = torch.cat(features), torch.tensor([y for y, keep in zip(labels, train) if keep])
    head = torch.nn.Linear(features.shape[1], 2)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), targets) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(step)
    fp32.head.out.weight.data.copy_(head.weight.detach())
    fp32.head.out.bias.data.copy_(head.bias.detach())
    int8 = leanformers.AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=2)
    int8.head.load_state_dict(fp32.head.state_dict())
    int8.quantize("int8")
    assert isinstance(int8.head.out, quant.Int8DynamicLinear) and isinstance(int8.model.pooler, quant.Int8DynamicLinear)
    test = [t for t, keep in zip(texts, train) if not keep]
    expected, got = logits_of(fp32, tokenizer, test).argmax(-1), logits_of(int8, tokenizer, test).argmax(-1)
    assert len(test) == 256
    held_out = torch.tensor([y for y, keep in zip(labels, train) if not keep])
    assert (expected == held_out).float().mean() >= 0.8  # the classifier is a real one
    assert (got == expected).float().mean().item() >= 0.99, f"{(got == expected).sum().item()}/256 labels equal"


# ---------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def tokenizer():
    return leanformers.AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)


def load(quantization=None):
    return leanformers.AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name,
                                                            quantization=quantization)


@pytest.mark.parametrize("kernel", ["blocks", "dequant"])
def test_smollm2_kept_quantized_answers_paris(tokenizer, monkeypatch, kernel):
    """Kept quantized, with our block kernels (the default on AVX2 CPUs: the file's Q4_1 / Q8_0 bytes) and with
    torch's int4 layers forced (dequantized per call on CPUs without bf16 instructions)."""
    if kernel == "dequant":
        monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", "dequant")
    else:
        monkeypatch.delenv("LEANFORMERS_QUANT_KERNEL", raising=False)
    model = load("gguf")
    report = model.quantization_report
    assert report["types"]["model.layers.0.mlp.up"] == "Q4_1" and report["types"]["model.embeddings.word"] == "Q8_0"
    assert not any(type(m) is torch.nn.Linear for m in model.modules())  # no float32 copy of a linear weight
    assert report["kernel"] == kernel
    if kernel == "blocks":  # q/k/v and gate/up joined, each a Q4_1 block layer; the tied table Q8_0 blocks
        layer = model.model.layers[0]
        assert isinstance(layer.attention.qkv, quant.BlockLinear) and layer.attention.qkv.block_type == "Q4_1"
        assert isinstance(layer.mlp.gate_up, quant.BlockLinear) and isinstance(model.model.embeddings.word,
                                                                               quant.BlockEmbedding)
    else:
        assert isinstance(model.model.layers[0].mlp.up, quant.Int4WeightLinear)
    assert model.head.decoder.weight is model.model.embeddings.word.weight  # one int8 table, tied
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert weight_bytes < 100e6, weight_bytes  # fp32: 540 MB
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == "The capital of France is Paris."


@pytest.mark.parametrize("kernel", ["blocks", "dequant"])
def test_smollm2_q4_blocks_map_exactly(tokenizer, monkeypatch, kernel):
    """The Q4_1 codes are kept as they are: dequantizing our layer gives the gguf package's float weights, exactly
    with the block kernels (the file's bytes), up to the bf16 rounding of the block scales in torch's int4 layout;
    the Q/K row order undone the same way."""
    from gguf.quants import dequantize

    from leanformers.gguf import _open, unpermute_rows

    if kernel == "dequant":
        monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", "dequant")  # torch's int4 layers, whatever the CPU
    else:
        monkeypatch.delenv("LEANFORMERS_QUANT_KERNEL", raising=False)
    model = load("gguf")
    reader = _open(str(SMOLLM2))
    for gguf_name, ours, heads in (("blk.3.ffn_down.weight", "model.layers.3.mlp.down", None),
                                   ("blk.3.attn_q.weight", "model.layers.3.attention.q", 9)):
        tensor = next(t for t in reader.tensors if t.name == gguf_name)
        expected = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy())
        expected = unpermute_rows(expected, heads) if heads else expected
        if kernel == "blocks" and ours.endswith(".q"):  # the first rows of the joined q/k/v layer
            got = model.get_submodule(ours[:-2] + ".qkv").dequantize()[:expected.shape[0]]
        else:
            got = model.get_submodule(ours).dequantize()
        bound = 0 if kernel == "blocks" else expected.abs().max().item() * 2 ** -7
        assert (got - expected).abs().max().item() <= bound


@pytest.fixture(scope="module")
def smollm2_fp32_perplexity(tokenizer):
    return perplexity(load(), botchan_ids(tokenizer))


@pytest.mark.parametrize("mode, bound", [("int8-weight", 0.01), ("int4-weight", 0.05), ("gguf", 0.05)])
def test_smollm2_perplexity_within_bound(tokenizer, smollm2_fp32_perplexity, mode, bound):
    quantized = perplexity(load(mode), botchan_ids(tokenizer))
    assert abs(quantized / smollm2_fp32_perplexity - 1) <= bound, (quantized, smollm2_fp32_perplexity)
