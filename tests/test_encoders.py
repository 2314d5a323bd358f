"""Every encoder architecture x head against the oracle on tiny random checkpoints (safetensors and .bin,
head-model and base-model checkpoints), padded batches against single runs, hidden states and attentions."""
import pytest
import torch
import transformers

import leanformers
from oracle import assert_close, assert_padded_equals_alone, random_inputs, save_tiny

HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
         "ForMultipleChoice"]

# architecture -> (class-name prefix, tiny config with odd sizes); each entry is run for every head
TINY = {
    "bert": ("Bert", lambda: transformers.BertConfig(
        vocab_size=99, hidden_size=36, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=3, num_labels=3)),
    "distilbert": ("DistilBert", lambda: transformers.DistilBertConfig(
        vocab_size=99, dim=36, n_layers=3, n_heads=4, hidden_dim=37, max_position_embeddings=64, num_labels=3)),
    "roberta": ("Roberta", lambda: transformers.RobertaConfig(
        vocab_size=99, hidden_size=36, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=1, num_labels=3)),
    "xlm-roberta": ("XLMRoberta", lambda: transformers.XLMRobertaConfig(
        vocab_size=101, hidden_size=36, num_hidden_layers=2, num_attention_heads=6, intermediate_size=41,
        max_position_embeddings=40, type_vocab_size=2, num_labels=3)),
    # two groups of two shared layers over four depths; embedding_size differs from hidden_size
    "albert": ("Albert", lambda: transformers.AlbertConfig(
        vocab_size=99, embedding_size=20, hidden_size=36, num_hidden_layers=4, num_hidden_groups=2,
        inner_group_num=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
        type_vocab_size=2, num_labels=3)),
    "electra": ("Electra", lambda: transformers.ElectraConfig(
        vocab_size=99, embedding_size=20, hidden_size=36, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, num_labels=3)),
}


def _inputs(config, batch=3, length=9, seed=0):
    ids, mask = random_inputs(config.vocab_size, batch, length, seed=seed, special=(3,))
    extra = {}
    if getattr(config, "type_vocab_size", 0) > 1 and config.model_type != "distilbert":
        extra["token_type_ids"] = (torch.arange(length) >= length // 2).long().expand(batch, length).contiguous()
    return ids, mask, extra


def _oracle(arch, head, **overrides):
    prefix, make_config = TINY[arch]
    config = make_config()
    for k, v in overrides.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    return getattr(transformers, prefix + head)(config).eval()


def _run(model, ids, mask, extra, head, **kwargs):
    if head == "ForMultipleChoice":  # (batch, choices, length): three choices that differ by a rotation
        ids = torch.stack([ids.roll(i, dims=1) for i in range(3)], 1)
        mask = mask[:, None].expand(-1, 3, -1).contiguous()
        extra = {k: v[:, None].expand(-1, 3, -1).contiguous() for k, v in extra.items()}
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **extra, **kwargs)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_head_checkpoint_parity(arch, head, safe, tmp_path):
    theirs = _oracle(arch, head, **({"num_labels": 2} if head == "ForQuestionAnswering" else {}))
    folder = save_tiny(theirs, tmp_path / "ckpt", safe=safe)
    ours = getattr(leanformers, TINY[arch][0] + head).from_pretrained(folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    ids, mask, extra = _inputs(theirs.config)
    assert_close(_run(theirs, ids, mask, extra, head), _run(ours, ids, mask, extra, head), what=f"{arch}{head}")


@pytest.mark.parametrize("arch", sorted(TINY))
def test_auto_classes_and_padding(arch, tmp_path):
    theirs = _oracle(arch, "ForSequenceClassification")
    folder = save_tiny(theirs, tmp_path / "ckpt")
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(ours).__name__ == TINY[arch][0] + "ForSequenceClassification"
    assert ours.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    ids, mask, extra = _inputs(theirs.config)
    assert_padded_equals_alone(ours, ids, mask, **extra)
    base = leanformers.AutoModel.from_pretrained(folder)  # a head checkpoint into the base model
    assert_close(_run(theirs.base_model, ids, mask, extra, "Model"), _run(base, ids, mask, extra, "Model"))
    assert_padded_equals_alone(base, ids, mask, key="last_hidden_state", **extra)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_base_checkpoint_into_head_model(arch, tmp_path):
    theirs = _oracle(arch, "Model")
    folder = save_tiny(theirs, tmp_path / "base")
    ours = leanformers.AutoModelForTokenClassification.from_pretrained(folder, num_labels=5)
    missing = ours.loading_info["missing_keys"]
    assert missing and all(k.startswith("head.") for k in missing), missing  # the new head is named
    ids, mask, extra = _inputs(theirs.config)
    ref = _run(theirs, ids, mask, extra, "Model").last_hidden_state
    assert_close({"h": ref}, {"h": _run(ours.model, ids, mask, extra, "Model").last_hidden_state})
    assert _run(ours, ids, mask, extra, "ForTokenClassification").logits.shape[-1] == 5


@pytest.mark.parametrize("arch", sorted(TINY))
def test_hidden_states_and_attentions(arch, tmp_path):
    theirs = _oracle(arch, "Model")
    folder = save_tiny(theirs, tmp_path / "ckpt")
    ours = leanformers.AutoModel.from_pretrained(folder)
    ids, mask, extra = _inputs(theirs.config)
    a = _run(theirs, ids, mask, extra, "Model", output_hidden_states=True, output_attentions=True)
    b = _run(ours, ids, mask, extra, "Model", output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(b.hidden_states) and len(a.attentions) == len(b.attentions)
    for i, (x, y) in enumerate(zip(a.hidden_states + a.attentions, b.hidden_states + b.attentions)):
        assert_close({"t": x}, {"t": y}, what=f"hidden/attention {i}")
