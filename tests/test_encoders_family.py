"""The encoder family beyond test_encoders' grid: losses for every head and problem type, ELECTRA's discriminator and
generator checkpoints, ALBERT / ELECTRA / DistilBERT variants, cross-head loading reports — all against the oracle."""
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import leanformers
from oracle import assert_close, assert_padded_equals_alone, random_inputs, save_tiny
from test_encoders import TINY, _inputs, _oracle, _run


def _pair(arch, head, folder, **overrides):
    """(oracle model, ours loaded from its save_pretrained folder)."""
    theirs = _oracle(arch, head, **overrides)
    save_tiny(theirs, folder)
    return theirs, getattr(leanformers, TINY[arch][0] + head).from_pretrained(folder)


def _loss(model, ids, mask, extra, head, **labels):
    return _run(model, ids, mask, extra, head, **labels).loss


@pytest.mark.parametrize("arch", sorted(TINY))
def test_sequence_classification_losses(arch, tmp_path):
    theirs, ours = _pair(arch, "ForSequenceClassification", tmp_path / "three")
    ids, mask, extra = _inputs(theirs.config)
    g = torch.Generator().manual_seed(1)
    cases = {  # problem_type (None: inferred from the labels' dtype) -> labels
        None: torch.tensor([2, 0, 1]),
        "single_label_classification": torch.tensor([1, 1, 0]),
        "multi_label_classification": torch.randint(0, 2, (3, 3), generator=g).float(),
        "regression": torch.randn(3, 3, generator=g),
    }
    cases_inferred_multi = {None: torch.randint(0, 2, (3, 3), generator=g).float()}
    for problem, labels in [*cases.items(), *cases_inferred_multi.items()]:
        theirs.config.problem_type = ours.config.problem_type = problem  # the oracle stores what it inferred
        a, b = _loss(theirs, ids, mask, extra, "", labels=labels), _loss(ours, ids, mask, extra, "", labels=labels)
        assert_close({"loss": a}, {"loss": b}, what=f"{arch} {problem}")
    theirs, ours = _pair(arch, "ForSequenceClassification", tmp_path / "one", num_labels=1)  # regression by size
    labels = torch.randn(3, generator=g)
    assert_close({"loss": _loss(theirs, ids, mask, extra, "", labels=labels)},
                 {"loss": _loss(ours, ids, mask, extra, "", labels=labels)}, what=f"{arch} num_labels=1")


@pytest.mark.parametrize("arch", sorted(TINY))
def test_other_head_losses(arch, tmp_path):
    ids, mask, extra = _inputs(_oracle(arch, "Model").config)
    g = torch.Generator().manual_seed(2)
    token_labels = torch.randint(0, 3, ids.shape, generator=g).masked_fill(mask == 0, -100)
    labels = {
        "ForTokenClassification": {"labels": token_labels},
        "ForMaskedLM": {"labels": torch.randint(0, 99, ids.shape, generator=g).masked_fill(mask == 0, -100)},
        "ForQuestionAnswering": {"start_positions": torch.tensor([1, 4, 30]), "end_positions": torch.tensor([3, 6, 2])},
        "ForMultipleChoice": {"labels": torch.tensor([2, 0, 1])},
    }
    for head, given in labels.items():
        theirs, ours = _pair(arch, head, tmp_path / head, **({"num_labels": 2} if "Question" in head else {}))
        a = _run(theirs, ids, mask, extra, head, **given)
        b = _run(ours, ids, mask, extra, head, **given)
        assert_close(a, b, what=f"{arch}{head}")  # loss and logits


# ---------------------------------------------------------------- ELECTRA's two checkpoint kinds
def _electra(hidden=36, embedding=20, heads=4):
    return transformers.ElectraConfig(vocab_size=99, embedding_size=embedding, hidden_size=hidden,
                                      num_hidden_layers=2, num_attention_heads=heads, intermediate_size=37,
                                      max_position_embeddings=64, num_labels=3)


def _loaded_both_ways(head, folder):
    """Load a checkpoint into (the oracle's, our) `Electra<head>`; return both models and both loading reports."""
    theirs, info = getattr(transformers, "Electra" + head).from_pretrained(folder, output_loading_info=True)
    ours = getattr(leanformers, "Electra" + head).from_pretrained(folder)
    return theirs.eval(), ours, info, ours.loading_info


def test_electra_discriminator_checkpoint(tmp_path):
    torch.manual_seed(0)
    disc = transformers.ElectraForPreTraining(_electra()).eval()
    folder = save_tiny(disc, tmp_path / "disc", safe=False)
    ours = leanformers.AutoModelForPreTraining.from_pretrained(folder)
    assert type(ours).__name__ == "ElectraForPreTraining" and not ours.loading_info["missing_keys"]
    ids, mask, extra = _inputs(disc.config)
    replaced = torch.randint(0, 2, ids.shape, generator=torch.Generator().manual_seed(3))
    a = _run(disc, ids, mask, extra, "ForPreTraining", labels=replaced)
    b = _run(ours, ids, mask, extra, "ForPreTraining", labels=replaced)
    assert_close(a, b, keys=["loss", "logits"])
    assert_padded_equals_alone(ours, ids, mask, **extra)
    # into a classifier: the discriminator head is reported unused, the classifier newly initialised
    theirs, ours, their_info, our_info = _loaded_both_ways("ForSequenceClassification", folder)
    assert set(our_info["unexpected_keys"]) == set(their_info["unexpected_keys"]) != set()
    assert sorted(our_info["missing_keys"]) == ["head.dense.bias", "head.dense.weight", "head.out.bias",
                                                "head.out.weight"]
    assert_close(_run(theirs.electra, ids, mask, extra, "Model"), _run(ours.model, ids, mask, extra, "Model"))


def test_electra_generator_checkpoint(tmp_path):
    torch.manual_seed(0)
    gen = transformers.ElectraForMaskedLM(_electra(hidden=24, heads=2)).eval()  # generators are smaller
    folder = save_tiny(gen, tmp_path / "gen")
    ours = leanformers.AutoModelForMaskedLM.from_pretrained(folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"]
    assert ours.head.decoder.weight is ours.model.embeddings.word.weight  # generator_lm_head is tied
    ids, mask, extra = _inputs(gen.config)
    assert_close(_run(gen, ids, mask, extra, "ForMaskedLM"), _run(ours, ids, mask, extra, "ForMaskedLM"))
    # a generator's (hidden -> embedding_size) head must not be mistaken for a classifier's dense layer
    for head in ("ForSequenceClassification", "ForPreTraining"):
        theirs, ours, their_info, our_info = _loaded_both_ways(head, folder)
        assert set(our_info["unexpected_keys"]) == set(their_info["unexpected_keys"]) != set(), head
        assert_close(_run(theirs.electra, ids, mask, extra, "Model"), _run(ours.model, ids, mask, extra, "Model"))


def test_electra_without_projection(tmp_path):
    torch.manual_seed(0)
    theirs = transformers.ElectraForTokenClassification(_electra(hidden=36, embedding=36)).eval()
    ours = leanformers.ElectraForTokenClassification.from_pretrained(save_tiny(theirs, tmp_path / "c"))
    assert ours.model.embeddings.project is None and not ours.loading_info["unexpected_keys"]
    ids, mask, extra = _inputs(theirs.config)
    assert_close(_run(theirs, ids, mask, extra, "ForTokenClassification"),
                 _run(ours, ids, mask, extra, "ForTokenClassification"))


def test_roberta_mlm_checkpoint_into_classifier(tmp_path):
    """lm_head.dense and classifier.dense both become head.dense: only the masked-LM model may read lm_head."""
    theirs = _oracle("roberta", "ForMaskedLM")
    folder = save_tiny(theirs, tmp_path / "mlm")
    their_cls, info = transformers.RobertaForSequenceClassification.from_pretrained(folder, output_loading_info=True)
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder)
    assert set(ours.loading_info["unexpected_keys"]) == set(info["unexpected_keys"]) != set()
    assert {"head.dense.weight", "head.out.weight"} <= set(ours.loading_info["missing_keys"])


@pytest.mark.parametrize("arch", ["albert", "distilbert"])
def test_untied_masked_lm(arch, tmp_path):
    """tie_word_embeddings=False: the output projection is its own weight, read from the checkpoint."""
    theirs, ours = _pair(arch, "ForMaskedLM", tmp_path / "m", tie_word_embeddings=False)
    assert ours.head.decoder.weight is not ours.model.embeddings.word.weight
    ids, mask, extra = _inputs(theirs.config)
    assert_close(_run(theirs, ids, mask, extra, "ForMaskedLM"), _run(ours, ids, mask, extra, "ForMaskedLM"))


# ---------------------------------------------------------------- ALBERT and DistilBERT variants
@pytest.mark.parametrize("groups,inner", [(1, 1), (3, 1), (1, 2)])
def test_albert_layer_sharing(groups, inner, tmp_path):
    config = transformers.AlbertConfig(vocab_size=99, embedding_size=36, hidden_size=36, num_hidden_layers=3,
                                       num_hidden_groups=groups, inner_group_num=inner, num_attention_heads=4,
                                       intermediate_size=37, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    theirs = transformers.AlbertForMaskedLM(config).eval()
    ours = leanformers.AlbertForMaskedLM.from_pretrained(save_tiny(theirs, tmp_path / "a"))
    assert len(ours.model.layers) == groups * inner and not ours.loading_info["missing_keys"]
    assert ours.model.embeddings.project is not None  # ALBERT maps even when the sizes agree
    ids, mask, extra = _inputs(config)
    a = _run(theirs, ids, mask, extra, "", output_hidden_states=True, output_attentions=True)
    b = _run(ours, ids, mask, extra, "", output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(b.hidden_states) and len(a.attentions) == len(b.attentions)
    for i, (x, y) in enumerate(zip((a.logits, *a.hidden_states, *a.attentions), (b.logits, *b.hidden_states,
                                                                                  *b.attentions))):
        assert_close({"t": x}, {"t": y}, what=f"output {i}")


def test_distilbert_sinusoidal_positions(tmp_path):
    config = TINY["distilbert"][1]()
    config.sinusoidal_pos_embds = True
    torch.manual_seed(0)
    theirs = transformers.DistilBertModel(config).eval()
    folder = save_tiny(theirs, tmp_path / "d")
    path = tmp_path / "d" / "model.safetensors"
    weights = load_file(path)
    assert "embeddings.position_embeddings.weight" in weights  # such checkpoints still store the table
    del weights["embeddings.position_embeddings.weight"]
    save_file(weights, path, metadata={"format": "pt"})
    ours = leanformers.AutoModel.from_pretrained(folder)  # the fixed table is filled in, not drawn at random
    assert not ours.loading_info["missing_keys"]
    ids, mask, extra = _inputs(config)
    assert_close(_run(theirs, ids, mask, extra, "Model"), _run(ours, ids, mask, extra, "Model"))
    with pytest.raises(TypeError, match="token_type_ids"):
        ours(input_ids=ids, token_type_ids=torch.zeros_like(ids))


def test_roberta_inputs_embeds_positions(tmp_path):
    theirs, ours = _pair("roberta", "Model", tmp_path / "r")
    ids, mask = random_inputs(99, special=(3,))
    with torch.no_grad():
        embeds = theirs.embeddings.word_embeddings(ids)
        a = theirs(inputs_embeds=embeds, attention_mask=mask)
        b = ours(inputs_embeds=embeds, attention_mask=mask)
    assert_close(a, b)


def test_classes_and_config_aliases(tmp_path):
    theirs = _oracle("distilbert", "ForQuestionAnswering", num_labels=2)
    folder = save_tiny(theirs, tmp_path / "q")
    ours = leanformers.AutoModelForQuestionAnswering.from_pretrained(folder)
    assert type(ours).__name__ == "DistilBertForQuestionAnswering"
    assert ours.config.hidden_size == ours.config.dim == 36 and ours.config.num_hidden_layers == 3
    for name in ("XLMRobertaForMaskedLM", "AlbertForMultipleChoice", "ElectraForPreTraining", "RobertaModel"):
        assert getattr(leanformers, name).__name__ == name
    xlmr = _oracle("xlm-roberta", "ForMaskedLM")
    config = json.loads(open(save_tiny(xlmr, tmp_path / "x") + "/config.json").read())
    assert config["model_type"] == "xlm-roberta"
    assert type(leanformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "x")).__name__ == "XLMRobertaForMaskedLM"
