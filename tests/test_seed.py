"""The user's notes (../shared/seed/) run unchanged but for the import, offline, against checkpoints placed in the
Hugging Face cache layout under the names the notes use; their numbers equal what transformers prints."""
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
                                           id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
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
