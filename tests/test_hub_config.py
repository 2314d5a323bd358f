"""Hub resolution (folders, the HF cache layout, offline mode, revisions), Config, and the torch-free import."""
import json
import subprocess
import sys

import pytest
import transformers

from leanformers import AutoConfig, hub
from oracle import hf_cache_layout


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def _folder(tmp_path, **config):
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", **config}))
    return folder


def test_local_folder_and_missing_file(tmp_path):
    folder = _folder(tmp_path)
    assert hub.resolve(folder, "config.json") == str(folder / "config.json")
    assert hub.resolve(folder, "nope.json", required=False) is None
    with pytest.raises(FileNotFoundError, match="nope.json"):
        hub.resolve(folder, "nope.json")
    with pytest.raises(FileNotFoundError, match="neither an existing folder"):
        hub.resolve(str(tmp_path / "no" / "such" / "dir"), "config.json")


def test_repo_id_in_cache_offline(tmp_path, cache):
    snapshot = hf_cache_layout(cache, "org/tiny-bert", _folder(tmp_path, hidden_size=8))
    assert hub.resolve("org/tiny-bert", "config.json").startswith(snapshot)
    assert AutoConfig.from_pretrained("org/tiny-bert").hidden_size == 8
    with pytest.raises(FileNotFoundError, match=r"'model.safetensors' of 'org/tiny-bert'.*HF_HUB_OFFLINE"):
        hub.resolve("org/tiny-bert", "model.safetensors")
    with pytest.raises(FileNotFoundError, match="org/absent"):
        AutoConfig.from_pretrained("org/absent")


def test_revision_selects_snapshot(tmp_path, cache):
    hf_cache_layout(cache, "org/m", _folder(tmp_path, hidden_size=8), revision_hash="a" * 40)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    hf_cache_layout(cache, "org/m", other, revision_hash="b" * 40)  # refs/main now points at b
    assert AutoConfig.from_pretrained("org/m").hidden_size == 16
    assert AutoConfig.from_pretrained("org/m", revision="a" * 40).hidden_size == 8


def test_config_aliases_labels_and_unknown_keys(tmp_path):
    folder = _folder(tmp_path, id2label={"0": "NEG", "1": "POS"}, my_custom_key=[1, 2])
    config = AutoConfig.from_pretrained(folder)
    assert config.id2label == {0: "NEG", 1: "POS"} and config.label2id == {"NEG": 0, "POS": 1}
    assert config.num_labels == 2 and config.my_custom_key == [1, 2]
    distil = AutoConfig.for_model("distilbert", dim=48, n_layers=2, n_heads=3)
    assert (distil.hidden_size, distil.num_hidden_layers, distil.num_attention_heads) == (48, 2, 3)
    gpt2 = AutoConfig.for_model("gpt2", n_embd=24)
    assert gpt2.hidden_size == 24 and gpt2.max_position_embeddings == 1024
    # the same keys transformers reads
    theirs = transformers.AutoConfig.from_pretrained(folder)
    assert theirs.id2label == config.id2label and theirs.layer_norm_eps == config.layer_norm_eps
    config.num_labels = 3
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_bad_config_json(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        AutoConfig.from_pretrained(folder)


def test_import_does_not_load_torch():
    code = ("import sys, leanformers; leanformers.AutoConfig; import leanformers.tokenization; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
