"""Collators against transformers' (same real tokenizer files): padding, label padding, decoder_input_ids from the
model's shift, and language-model masking — the same masks for the same seed (the draws are made in transformers'
order), and the 15% / 80-10-10 statistics."""
from pathlib import Path

import pytest
import torch

import leanformers as lf
from leanformers.training import collators

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

FOLDER = Path(__file__).resolve().parents[1] / ".models" / "minilm"
SENTENCES = ["Hello world!", "The quick brown fox jumps over the lazy dog.", "A",
             "Tokenizers split words into sub-word pieces like unbelievably."]


@pytest.fixture(scope="module")
def tokenizers():
    if not (FOLDER / "tokenizer.json").exists():
        pytest.skip("the real MiniLM tokenizer is not in .models (scripts/fetch_models.sh)")
    return lf.AutoTokenizer.from_pretrained(FOLDER), transformers.AutoTokenizer.from_pretrained(FOLDER)


def assert_same_batch(theirs, ours):
    assert sorted(theirs) == sorted(ours)
    for key in theirs:
        if theirs[key] is None:
            assert ours[key] is None, key
            continue
        assert theirs[key].dtype == ours[key].dtype and torch.equal(theirs[key], ours[key]), key


def features(tokenizer, **extra):
    return [{**dict(tokenizer(text)), **{k: v[i] for k, v in extra.items()}} for i, text in enumerate(SENTENCES)]


@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 32}])
def test_with_padding(tokenizers, options):
    ours, theirs = tokenizers
    labels = {"label": [0, 1, 1, 0]}
    assert_same_batch(transformers.DataCollatorWithPadding(theirs, **options)(features(theirs, **labels)),
                      collators.DataCollatorWithPadding(ours, **options)(features(ours, **labels)))


def test_default_collator():
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 0], "label": 2, "text": "ignored"},
            {"input_ids": [8, 9, 10], "attention_mask": [1, 1, 1], "label": 0, "text": "ignored"}]
    assert_same_batch(transformers.default_data_collator(rows), collators.default_data_collator(rows))
    floats = [{"input_ids": torch.tensor([1, 2]), "label": 0.5}, {"input_ids": torch.tensor([3, 4]), "label": 1.5}]
    assert_same_batch(transformers.default_data_collator(floats), collators.default_data_collator(floats))


@pytest.mark.parametrize("side", ["right", "left"])
def test_token_classification(tokenizers, side):
    ours, theirs = tokenizers
    ours.padding_side = theirs.padding_side = side
    try:
        labels = {"labels": [[i % 3 for i in range(len(ours(text)["input_ids"]))] for text in SENTENCES]}
        assert_same_batch(transformers.DataCollatorForTokenClassification(theirs)(features(theirs, **labels)),
                          collators.DataCollatorForTokenClassification(ours)(features(ours, **labels)))
    finally:
        ours.padding_side = theirs.padding_side = "right"


def test_seq2seq_with_the_models_shift(tokenizers, tmp_path):
    ours, theirs = tokenizers
    config = transformers.BartConfig(vocab_size=ours.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=101,
                                     eos_token_id=102, decoder_start_token_id=102)
    transformers.BartForConditionalGeneration(config).save_pretrained(tmp_path)
    hf_model = transformers.BartForConditionalGeneration.from_pretrained(tmp_path)
    model = lf.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    targets = {"labels": [ours(text)["input_ids"] for text in reversed(SENTENCES)]}
    for options in ({}, {"pad_to_multiple_of": 4}):
        expected = transformers.DataCollatorForSeq2Seq(theirs, model=hf_model, **options)(features(theirs, **targets))
        got = collators.DataCollatorForSeq2Seq(ours, model=model, **options)(features(ours, **targets))
        assert "decoder_input_ids" in got
        assert_same_batch(dict(expected), got)


@pytest.mark.parametrize("seeded", [True, False])
def test_masked_lm_masks_like_transformers(tokenizers, seeded):
    """Seeded (the collator's own generator) or from torch's global generator: the same masks, replacements and
    labels as transformers' collator, call after call."""
    ours, theirs = tokenizers
    options = {"seed": 42} if seeded else {}
    their_collator = transformers.DataCollatorForLanguageModeling(theirs, mlm_probability=0.3, **options)
    our_collator = collators.DataCollatorForLanguageModeling(ours, mlm_probability=0.3, **options)
    for call in range(3):
        torch.manual_seed(call)
        expected = their_collator(features(theirs))
        torch.manual_seed(call)
        got = our_collator(features(ours))
        assert_same_batch(dict(expected), got)


def test_masked_lm_statistics(tokenizers):
    """15% of the non-special tokens are picked; of those ~80% [MASK], ~10% random, ~10% kept; specials and padding
    never; labels are -100 everywhere else."""
    ours, _ = tokenizers
    rows = [dict(ours(" ".join(["word"] * 60))) for _ in range(200)]
    original = torch.tensor([row["input_ids"] for row in rows])
    batch = collators.DataCollatorForLanguageModeling(ours, seed=1)(rows)
    picked = batch["labels"] != -100
    special = torch.isin(original, torch.tensor(ours.all_special_ids))
    assert not (picked & special).any()
    assert torch.equal(batch["labels"][picked], original[picked])
    rate = picked.sum().item() / (~special).sum().item()
    masked = (batch["input_ids"] == ours.mask_token_id) & picked
    kept = (batch["input_ids"] == original) & picked
    shares = masked.sum().item() / picked.sum().item(), kept.sum().item() / picked.sum().item()
    assert abs(rate - 0.15) < 0.01 and abs(shares[0] - 0.8) < 0.02 and abs(shares[1] - 0.1) < 0.02, (rate, shares)


def test_causal_lm_labels(tokenizers):
    ours, theirs = tokenizers
    their_collator = transformers.DataCollatorForLanguageModeling(theirs, mlm=False)
    our_collator = collators.DataCollatorForLanguageModeling(ours, mlm=False)
    assert_same_batch(dict(their_collator(features(theirs))), our_collator(features(ours)))
    lists = [ours(text)["input_ids"] for text in SENTENCES]  # plain lists of ids, padded by the collator
    assert_same_batch(dict(their_collator(lists)), our_collator(lists))
    assert (our_collator(lists)["labels"] == -100).sum() > 0


def test_align_labels_with_tokens(tokenizers):
    ours, _ = tokenizers
    words, tags = ["Huggingface", "is", "unbelievably", "good"], [3, 0, 0, 1]
    encoding = ours(words, is_split_into_words=True)
    word_ids = encoding.word_ids(0)
    first = collators.align_labels_with_tokens(tags, word_ids)
    every = collators.align_labels_with_tokens(tags, word_ids, label_all_tokens=True)
    assert len(first) == len(encoding["input_ids"]) and first[0] == first[-1] == -100
    for position, word in enumerate(word_ids):
        if word is None:
            assert first[position] == every[position] == -100
        elif position > 0 and word_ids[position - 1] == word:
            assert first[position] == -100 and every[position] == tags[word]
        else:
            assert first[position] == every[position] == tags[word]
    assert sorted(set(first) - {-100}) == [0, 1, 3]
    with pytest.raises(ValueError, match="word index 3 has no label"):
        collators.align_labels_with_tokens([0, 1, 2], word_ids)
