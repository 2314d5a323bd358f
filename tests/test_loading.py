"""Weight files: sharded indexes, legacy names, tied embeddings, dtype "auto", loading info."""
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import leanformers
from oracle import assert_close, random_inputs


@pytest.fixture(scope="module")
def tiny_mlm():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=40, max_position_embeddings=40)
    return transformers.BertForMaskedLM(config).eval()


def _logits(model, ids, mask):
    with torch.no_grad():
        return {"logits": model(input_ids=ids, attention_mask=mask).logits}


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_sharded_checkpoint(tiny_mlm, tmp_path, safe):
    tiny_mlm.save_pretrained(tmp_path, safe_serialization=safe, max_shard_size="20KB")
    index = "model.safetensors.index.json" if safe else "pytorch_model.bin.index.json"
    assert (tmp_path / index).exists() and len(list(tmp_path.glob("*-of-*"))) > 2
    ours = leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids, mask = random_inputs(120)
    assert_close(_logits(tiny_mlm, ids, mask), _logits(ours, ids, mask))


def test_legacy_gamma_beta_names_and_tied_decoder(tiny_mlm, tmp_path):
    tiny_mlm.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items() if k != "cls.predictions.decoder.weight"}
    assert any(k.endswith("gamma") for k in renamed)
    save_file(renamed, tmp_path / "model.safetensors")
    ours = leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    assert ours.head.decoder.weight.data_ptr() == ours.model.embeddings.word.weight.data_ptr()  # tied
    ids, mask = random_inputs(120)
    assert_close(_logits(tiny_mlm, ids, mask), _logits(ours, ids, mask))


def test_dtype_auto_follows_config(tiny_mlm, tmp_path):
    tiny_mlm.to(torch.bfloat16).save_pretrained(tmp_path)
    tiny_mlm.float()
    assert leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path, dtype="auto").dtype == torch.bfloat16
    assert leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype must be"):
        leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path, dtype="float64x")


def test_output_loading_info_names_new_head(tiny_mlm, tmp_path):
    tiny_mlm.save_pretrained(tmp_path)
    model, info = leanformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=4, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["head.out.bias", "head.out.weight", "model.pooler.bias",
                                            "model.pooler.weight"]
    assert model.config.num_labels == 4 and model.head.out.weight.shape == (4, 32)
    assert all(not p.is_meta for p in model.parameters())
