"""Bad input gets a clear error naming what is wrong (issue 2 part 8), and `dtype=` loading (float16 / bfloat16 /
"auto") gives the right parameter dtype and outputs close to float32."""
import json
import os
import shutil

import pytest
import torch

import leanformers
from oracle import assert_close, save_tiny
from test_encoders import _inputs, _oracle, _run


class NotAWeight:  # a pickled object of this class is not plain weights
    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny RoBERTa classifier saved by the oracle: (folder, oracle model)."""
    theirs = _oracle("roberta", "ForSequenceClassification")
    return save_tiny(theirs, tmp_path_factory.mktemp("roberta")), theirs


def _copy(folder, tmp_path, weights=True):
    target = tmp_path / "copy"
    target.mkdir()
    for name in os.listdir(folder):
        if weights or not name.endswith((".safetensors", ".bin")):
            shutil.copy(os.path.join(folder, name), target / name)
    return target


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        leanformers.AutoModel.from_pretrained(str(tmp_path / "nowhere"))


def test_missing_weights_file(checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path, weights=False)
    with pytest.raises(FileNotFoundError, match="has no weights.*model.safetensors"):
        leanformers.AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(damage, checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(b"\x13not a safetensors file at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file"):
        leanformers.AutoModel.from_pretrained(folder)


def test_pickle_that_is_not_plain_weights(checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path, weights=False)
    torch.save({"roberta.embeddings.word_embeddings.weight": NotAWeight()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin holds more than plain weights"):
        leanformers.AutoModel.from_pretrained(folder)


def test_unknown_model_type(checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberto"}))
    with pytest.raises(ValueError, match="unknown model_type 'roberto'; supported: .*albert.*distilbert.*electra.*"
                                         "roberta.*xlm-roberta"):
        leanformers.AutoModel.from_pretrained(folder)


def test_head_the_architecture_lacks(checkpoint):
    with pytest.raises(ValueError, match="roberta has no ForPreTraining head; it has: .*ForMaskedLM"):
        leanformers.AutoModelForPreTraining.from_pretrained(checkpoint[0])
    with pytest.raises(AttributeError, match="DistilBertForPreTraining"):
        leanformers.DistilBertForPreTraining


def test_shape_mismatch_between_config_and_weights(checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    with pytest.raises(ValueError, match=r"copy: weight 'roberta.encoder.layer.0.intermediate.dense.(weight|bias)' "
                                         r"\(our 'model.layers.0.mlp.up.(weight|bias)'\) has shape \(37.*"
                                         r"but the config.*expects \(40"):
        leanformers.AutoModel.from_pretrained(folder)


def test_relative_position_variants_are_refused(checkpoint, tmp_path):
    folder = _copy(checkpoint[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    with pytest.raises(NotImplementedError, match="position_embedding_type='relative_key' is not supported"):
        leanformers.AutoModel.from_pretrained(folder)


def test_sequence_longer_than_position_table(checkpoint):
    ours = leanformers.AutoModel.from_pretrained(checkpoint[0])
    limit = ours.config.max_position_embeddings - ours.config.pad_token_id - 1  # RoBERTa counts past padding_idx
    with torch.no_grad():
        ours(input_ids=torch.full((1, limit), 5))
        with pytest.raises(ValueError, match="max_position_embeddings=64.*truncation=True"):
            ours(input_ids=torch.full((1, limit + 1), 5))


@pytest.mark.parametrize("dtype,atol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2), ("float16", 5e-3)])
def test_dtype(dtype, atol, checkpoint):
    folder, theirs = checkpoint
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
    expected = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert {p.dtype for p in ours.parameters()} == {expected} and ours.dtype == expected
    ids, mask, extra = _inputs(theirs.config)
    out = _run(ours, ids, mask, extra, "")
    assert out.logits.dtype == expected
    assert_close(_run(theirs, ids, mask, extra, ""), out, atol=atol)


def test_dtype_auto_follows_the_checkpoint(tmp_path):
    theirs = _oracle("electra", "ForSequenceClassification")
    folder = save_tiny(theirs.to(torch.bfloat16), tmp_path / "bf16")
    assert json.loads(open(os.path.join(folder, "config.json")).read())["dtype"] == "bfloat16"
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype="auto")
    assert ours.dtype == torch.bfloat16
    assert leanformers.AutoModelForSequenceClassification.from_pretrained(folder).dtype == torch.float32  # 4.x default
    ids, mask, extra = _inputs(theirs.config)
    assert_close(_run(theirs, ids, mask, extra, ""), _run(ours, ids, mask, extra, ""), atol=1e-2)
    with pytest.raises(ValueError, match="dtype must be"):
        leanformers.AutoModel.from_pretrained(folder, dtype="float13")
