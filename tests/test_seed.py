"""The user's notes (../shared/seed/) run unchanged but for the import, offline, against checkpoints placed in the
Hugging Face cache layout under the names the notes use; their numbers equal what transformers prints."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from oracle import MODELS, assert_close, hf_cache_layout, offline_hub

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed"
SST2 = "distilbert-base-uncased-finetuned-sst-2-english"


def seed_snippets() -> list[str]:
    files = sorted(SEED.glob("*.txt")) + sorted(SEED.glob("*.md"))
    assert files, f"no seed notes found in {SEED}"
    return [block for f in files for block in re.findall(r"```python\n(.*?)```", f.read_text(), re.S)]


def _run(snippets, library: str) -> dict:
    namespace: dict = {}
    for code in snippets:
        exec(compile(code.replace("from transformers import", f"from {library} import"), "<seed>", "exec"), namespace)
    return namespace


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A tiny random DistilBERT sentiment classifier with the real bert-base-uncased vocabulary, cached as SST2."""
    offline_hub(monkeypatch, tmp_path / "hub")
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                           id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                           label2id={"NEGATIVE": 0, "POSITIVE": 1})
    folder = tmp_path / "sst2"
    transformers.DistilBertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(MODELS / "minilm" / name, folder / name)
    # as the real checkpoint ships it: no tokenizer_class, so config.json's model_type picks DistilBERT's tokenizer
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true, "model_max_length": 512}')
    hf_cache_layout(tmp_path / "hub", SST2, folder)
    return tmp_path / "hub"


def test_seed_tokenizer_model_postprocessing(offline_cache):
    snippets = [s for s in seed_snippets() if "pipeline(" not in s]
    assert len(snippets) >= 4, "expected the tokenizer, model and post-processing snippets"
    ours, theirs = _run(snippets, "leanformers"), _run(snippets, "transformers")
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(ours["inputs"][key], theirs["inputs"][key])
    assert_close({"logits": theirs["outputs"].logits, "p": theirs["predictions"]},
                 {"logits": ours["outputs"].logits, "p": ours["predictions"]})
    assert ours["model"].config.id2label == theirs["model"].config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}


def test_seed_translation_pipeline(tmp_path, monkeypatch):
    """The notes' first example: a Marian checkpoint cached as Helsinki-NLP/opus-mt-fr-en (tiny random weights, real
    SentencePiece models as source.spm / target.spm), run by the snippet itself, equal to transformers 4.57.6."""
    import sentencepiece

    snippets = [s for s in seed_snippets() if 'pipeline("translation"' in s]
    assert len(snippets) == 1
    hub_root = offline_hub(monkeypatch, tmp_path / "hub")
    folder = tmp_path / "opus"
    folder.mkdir()
    pieces = ["</s>", "<unk>"]
    pairs = (("botchan_en_unigram_1000.model", "source.spm"), ("botchan_en_bpe_1000.model", "target.spm"))
    for source, target in pairs:
        shutil.copy(MODELS / "spm" / source, folder / target)
        processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / target))
        pieces += [p for p in map(processor.id_to_piece, range(3, processor.get_piece_size())) if p not in pieces]
    vocab = {p: i for i, p in enumerate(pieces + ["<pad>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(json.dumps({"source_lang": "fr", "target_lang": "en",
                                                              "model_max_length": 512}))
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.3,
        pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"], forced_eos_token_id=0,
        num_beams=4, max_length=16, bad_words_ids=[[vocab["<pad>"]]], architectures=["MarianMTModel"])
    transformers.MarianMTModel(config).eval().save_pretrained(folder)
    hf_cache_layout(hub_root, "Helsinki-NLP/opus-mt-fr-en", folder)

    ours, theirs = _run(snippets, "leanformers"), _run(snippets, "transformers")
    text = "Ce cours est produit par Hugging Face."
    expected = theirs["translator"](text)
    assert ours["translator"](text) == expected
    assert set(expected[0]) == {"translation_text"} and expected[0]["translation_text"]
    batch = [text, "Bonjour le monde !", "Une phrase un peu plus longue que les autres, pour le remplissage."]
    assert ours["translator"](batch, batch_size=2) == theirs["translator"](batch, batch_size=2)
