"""model.save_pretrained writes what transformers writes: for every architecture x head, transformers 4.57.6 loads our
save with no missing or unexpected keys and gives the oracle's outputs, the weights carry transformers' own names
(the key set of its own save_pretrained), tied weights are written once, and we reload our save equally. Sharding,
pytorch_model.bin, generation_config.json, config.json keys and the clear errors."""
import json
import logging
import os

import pytest
import torch
import transformers
from safetensors.torch import load_file

import leanformers
from oracle import max_diff, save_tiny
from tiny_matrix import CASES, assert_outputs_close, batch

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = [pytest.mark.usefixtures("one_thread", "oracle_type_as"),
              pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning",
                                         "ignore::UserWarning")]


def _weights(folder) -> dict:
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def _perturbed(model):
    """Norms at exactly 1/0 and zero biases would hide a swapped or dropped tensor: make every value distinct."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=g) * 0.05)
    return model


@pytest.mark.parametrize("name", sorted(CASES))
def test_transformers_loads_our_save(name, tmp_path):
    case = CASES[name]
    theirs = case.make()
    ours = getattr(leanformers, case.class_name).from_pretrained(save_tiny(theirs, tmp_path / "theirs"))
    _perturbed(ours)
    ours.save_pretrained(tmp_path / "ours")
    assert set(_weights(tmp_path / "ours")) == set(_weights(tmp_path / "theirs")), "not transformers' key set"
    cls = getattr(transformers, case.class_name)
    reloaded, info = cls.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == [case.class_name] and config["model_type"] == theirs.config.model_type
    assert config["torch_dtype"] == "float32"
    inputs = batch(case, theirs.config)
    with torch.no_grad():
        expected, got = reloaded.eval()(**inputs), ours(**inputs)
        assert_outputs_close(case, inputs, expected, got)
        again = type(ours).from_pretrained(tmp_path / "ours")
        assert not again.loading_info["missing_keys"] and not again.loading_info["unexpected_keys"]
        assert_outputs_close(case, inputs, again(**inputs), got, atol=0)


def _tiny_bert(**overrides):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, max_position_embeddings=64, num_labels=3, **overrides)
    return transformers.BertForSequenceClassification(config).eval()


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_shards_above_max_shard_size(safe, tmp_path):
    """Above max_shard_size the weights go into numbered shards with an index both libraries read."""
    theirs = _tiny_bert()
    ours = leanformers.BertForSequenceClassification.from_pretrained(save_tiny(theirs, tmp_path / "theirs"))
    written = ours.save_pretrained(tmp_path / "ours", safe_serialization=safe, max_shard_size="40KB")
    stem, index_name = ("model", "model.safetensors.index.json") if safe else ("pytorch_model",
                                                                                "pytorch_model.bin.index.json")
    shards = sorted(name for name in os.listdir(tmp_path / "ours") if name.startswith(stem + "-"))
    assert len(shards) > 2 and shards[0] == f"{stem}-00001-of-{len(shards):05d}.{'safetensors' if safe else 'bin'}"
    assert set(written) >= {"config.json", index_name, *shards}
    index = json.loads((tmp_path / "ours" / index_name).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    sizes = {k: v.numel() * 4 for k, v in theirs.state_dict().items() if k in index["weight_map"]}
    assert index["metadata"]["total_size"] == sum(sizes.values())
    reloaded, info = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours",
                                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(0, 99, (2, 7))
    with torch.no_grad():
        assert max_diff(reloaded(input_ids=ids).logits, ours(input_ids=ids).logits) <= 1e-6
        again = leanformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours")
        assert torch.equal(again(input_ids=ids).logits, ours(input_ids=ids).logits)
    # saving again, unsharded, leaves no stale shard beside the new file
    ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    assert not [n for n in os.listdir(tmp_path / "ours") if n.startswith(stem + "-") or n.endswith("index.json")]


def test_bin_file_and_config_keys(tmp_path):
    theirs = _tiny_bert(id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2})
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(save_tiny(theirs, tmp_path / "theirs"))
    assert ours.save_pretrained(tmp_path / "ours", safe_serialization=False) == ["config.json", "pytorch_model.bin"]
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"} and config["label2id"]["pos"] == 2
    assert config["architectures"] == ["BertForSequenceClassification"] and config["model_type"] == "bert"
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours")
    assert reloaded.config.id2label == theirs.config.id2label and reloaded.config.hidden_size == 32
    pipe = leanformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours")
    assert pipe.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}


def test_generation_config_is_written(tmp_path):
    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2,
                                                                  bos_token_id=1, eos_token_id=2)).eval()
    theirs.generation_config.max_new_tokens = 5
    theirs.generation_config.do_sample = False
    ours = leanformers.AutoModelForCausalLM.from_pretrained(save_tiny(theirs, tmp_path / "theirs"))
    assert "generation_config.json" in ours.save_pretrained(tmp_path / "ours")
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "ours").max_new_tokens == 5
    ids = torch.tensor([[3, 4, 5]])
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours")
    assert torch.equal(reloaded.generate(ids, pad_token_id=2), ours.generate(ids, pad_token_id=2))
    fresh = leanformers.AutoModelForCausalLM.from_config(leanformers.Config(model_type="gpt2", vocab_size=50,
                                                                            n_embd=16, n_layer=1, n_head=2))
    assert "generation_config.json" in fresh.save_pretrained(tmp_path / "fresh")


def test_gguf_loaded_llama_saves_as_safetensors(tmp_path):
    """A GGUF file (dequantized on loading) saved as a transformers checkpoint gives the same logits there."""
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", tied=False))
    ours = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    ours.save_pretrained(tmp_path / "saved")
    reloaded, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ids = torch.tensor([[1, 5, 9, 4, 7]])
    with torch.no_grad():
        assert max_diff(reloaded(input_ids=ids).logits, ours(input_ids=ids).logits) <= 1e-4


def test_clear_errors(tmp_path):
    model = leanformers.BertModel(leanformers.Config(model_type="bert", vocab_size=20, hidden_size=8,
                                                     num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=8))
    with pytest.raises(RuntimeError, match="Hub"):
        model.push_to_hub("me/my-model")
    with pytest.raises(RuntimeError, match="Hub"):
        model.save_pretrained(tmp_path / "x", push_to_hub=True)
    with pytest.raises(ValueError, match="max_shard_size"):
        model.save_pretrained(tmp_path / "x", max_shard_size="lots")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        model.save_pretrained(tmp_path / "file")
