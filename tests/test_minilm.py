"""End to end on the real all-MiniLM-L6-v2 (a 6-layer BERT): tokenizer, model, mean pooling, similarities."""
import pytest
import torch
import transformers

from leanformers import AutoModel, AutoTokenizer
from oracle import MODELS, assert_close

FOLDER = MODELS / "minilm"
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
             "The stock market crashed today."]


def mean_pooled(model, tokenizer, sentences):
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.fixture(scope="module")
def ours():
    return AutoModel.from_pretrained(FOLDER), AutoTokenizer.from_pretrained(FOLDER)


def test_tokenizer_ids(ours):
    assert ours[1]("Hello, unaffable world!")["input_ids"] == [101, 7592, 1010, 14477, 20961, 3468, 2088, 999, 102]


def test_embeddings_equal_oracle_and_similarities(ours):
    model, tokenizer = ours
    embeddings = mean_pooled(model, tokenizer, SENTENCES)
    reference = mean_pooled(transformers.AutoModel.from_pretrained(FOLDER).eval(),
                            transformers.AutoTokenizer.from_pretrained(FOLDER), SENTENCES)
    assert_close({"embeddings": reference}, {"embeddings": embeddings})
    similarity = (embeddings[0] @ embeddings[1:].T).tolist()
    assert [round(s, 3) for s in similarity] == [0.755, 0.689, 0.009]


def test_batch_equals_single_sentences(ours):
    model, tokenizer = ours
    batched = mean_pooled(model, tokenizer, SENTENCES)
    for i, sentence in enumerate(SENTENCES):
        assert_close({"e": mean_pooled(model, tokenizer, [sentence])[0]}, {"e": batched[i]})


def test_half_precision_close_to_fp32(ours):
    model, tokenizer = ours
    for dtype in (torch.bfloat16, torch.float16):
        half = AutoModel.from_pretrained(FOLDER, dtype=dtype)
        assert half.dtype == dtype
        cos = (mean_pooled(half, tokenizer, SENTENCES).float() * mean_pooled(model, tokenizer, SENTENCES)).sum(-1)
        assert cos.min().item() > 0.99
