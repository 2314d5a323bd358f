"""The model side of fine-tuning: loaded and fresh models are trainable (requires_grad, returned in eval mode), the
loss with labels backpropagates for every architecture x head, and the inference fast paths stay off while a
gradient flows (they key on torch.is_grad_enabled, not on frozen parameters)."""
import logging

import pytest
import torch
import transformers

import leanformers
from oracle import save_tiny
from tiny_matrix import CASES, assert_gradients_close, assert_outputs_close, batch, training_loss

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = [pytest.mark.usefixtures("one_thread", "oracle_type_as"),
              pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning",
                                         "ignore:To copy construct from a tensor")]


@pytest.mark.parametrize("name", sorted(CASES))
def test_loaded_model_trains(name, tmp_path):
    """from_pretrained: every parameter requires grad, eval() mode; the loss (or the output) backpropagates into
    every parameter the forward used, and equals the oracle's."""
    case = CASES[name]
    theirs = case.make()
    ours = getattr(leanformers, case.class_name).from_pretrained(save_tiny(theirs, tmp_path / "ckpt"))
    assert not ours.training
    assert all(p.requires_grad for p in ours.parameters())
    inputs = batch(case, theirs.config)
    out = ours(**inputs)
    with torch.no_grad():
        expected = theirs(**inputs)
    assert_outputs_close(case, inputs, expected, out)
    training_loss(case, inputs, out).backward()
    grads = {n: p.grad for n, p in ours.named_parameters()}
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads.values()) > len(grads) // 2, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_equal_the_oracle(name, tmp_path):
    """One backward (dropout off) gives the oracle's gradients, parameter by parameter, named as in the checkpoint."""
    case = CASES[name]
    theirs = case.make()
    ours = getattr(leanformers, case.class_name).from_pretrained(save_tiny(theirs, tmp_path / "ckpt"))
    inputs = batch(case, theirs.config)
    training_loss(case, inputs, theirs(**inputs)).backward()
    training_loss(case, inputs, ours(**inputs)).backward()
    assert_gradients_close(case, theirs, ours)


@pytest.mark.parametrize("task", ["AutoModelForSequenceClassification", "AutoModelForCausalLM",
                                  "AutoModelForSeq2SeqLM"])
def test_fresh_model_trains(task):
    """from_config and Model(config) give trainable models in train() mode, as transformers' do (from_pretrained
    returns eval() mode)."""
    config = {"AutoModelForSequenceClassification": dict(model_type="bert", vocab_size=50, hidden_size=16,
                                                         num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=20),
              "AutoModelForCausalLM": dict(model_type="gpt2", vocab_size=50, n_embd=16, n_layer=1, n_head=2),
              "AutoModelForSeq2SeqLM": dict(model_type="t5", vocab_size=50, d_model=16, d_kv=8, num_heads=2,
                                            num_layers=1, d_ff=20, decoder_start_token_id=0)}[task]
    model = getattr(leanformers, task).from_config(leanformers.Config(**config))
    assert model.training and all(p.requires_grad for p in model.parameters())
    ids = torch.randint(0, 50, (2, 5))
    labels = torch.tensor([0, 1]) if "Classification" in task else ids
    model(input_ids=ids, labels=labels).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.dim() > 1 and "relative" not in str(p.shape))


def test_inference_fast_paths_still_apply_under_no_grad():
    """Under no_grad the MLP writes into its scratch buffer and the residual adds in place; with a gradient flowing
    they do not (autograd needs the tensors they would overwrite), whatever requires_grad says."""
    from leanformers.modeling import layers

    config = leanformers.Config(model_type="bert", vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=20)
    model = leanformers.BertModel.from_config(config).eval()  # dropout off: both paths compute the same
    ids = torch.randint(0, 50, (2, layers.SCRATCH_ROWS))
    layers.release_scratch()
    with torch.inference_mode():
        fast = model(input_ids=ids).last_hidden_state
    assert layers._SCRATCH.buffer is not None
    layers.release_scratch()
    slow = model(input_ids=ids).last_hidden_state
    assert layers._SCRATCH.buffer is None and slow.requires_grad
    assert torch.allclose(fast, slow.detach(), atol=1e-6)


# ---------------------------------------------------------------- fresh weights as transformers initialises them
INIT_CASES = {  # class name -> a config big enough for statistics (every weight has >= 2048 entries)
    "BertForSequenceClassification": lambda t: t.BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                            num_attention_heads=4, intermediate_size=96,
                                                            initializer_range=0.05),
    "RobertaForMaskedLM": lambda t: t.RobertaConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=96),
    "DistilBertForQuestionAnswering": lambda t: t.DistilBertConfig(vocab_size=300, dim=64, n_layers=2, n_heads=4,
                                                                   hidden_dim=96),
    "GPT2LMHeadModel": lambda t: t.GPT2Config(vocab_size=300, n_embd=64, n_layer=4, n_head=4, n_positions=64),
    "LlamaForCausalLM": lambda t: t.LlamaConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=96, pad_token_id=0),
    "BartForConditionalGeneration": lambda t: t.BartConfig(vocab_size=300, d_model=64, encoder_layers=1,
                                                           decoder_layers=1, encoder_ffn_dim=96, decoder_ffn_dim=96,
                                                           max_position_embeddings=64, init_std=0.03),
    "T5ForConditionalGeneration": lambda t: t.T5Config(vocab_size=300, d_model=64, d_kv=16, num_heads=4,
                                                       num_layers=1, d_ff=96, initializer_factor=0.5,
                                                       relative_attention_num_buckets=64),
    "T5ForSequenceClassification": lambda t: t.T5Config(vocab_size=300, d_model=64, d_kv=16, num_heads=4,
                                                        num_layers=1, d_ff=96, feed_forward_proj="gated-gelu",
                                                        relative_attention_num_buckets=64),
}


@pytest.mark.parametrize("class_name", sorted(INIT_CASES))
def test_fresh_weights_follow_transformers_init(class_name):
    """Model(config): per parameter (named as in the checkpoint) the mean and std of transformers' init; biases
    and padding rows zero; norms filled as there."""
    from leanformers.saving import to_checkpoint

    hf_config = INIT_CASES[class_name](transformers)
    torch.manual_seed(0)
    theirs = dict(getattr(transformers, class_name)(hf_config).named_parameters())
    ours_model = getattr(leanformers, class_name)(leanformers.Config.from_dict(hf_config.to_dict()))
    assert ours_model.training  # as transformers' Model(config)
    ours, unnamed = to_checkpoint(type(ours_model).spec, dict(ours_model.named_parameters()), ours_model.config,
                                  type(ours_model).task)
    assert not unnamed
    for name, expected in theirs.items():
        if not expected.requires_grad:  # fixed tables (sinusoids), not initialised
            continue
        got = ours[name].detach()
        expected = expected.detach()
        assert got.shape == expected.shape, name
        if float(expected.std()) == 0.0 if expected.numel() > 1 else True:  # constant: zeros, ones, a factor
            assert torch.equal(got, expected), f"{class_name} {name}: not {expected.flatten()[0].item()}"
            continue
        rows = expected.abs().sum(-1) == 0 if expected.dim() == 2 else None
        if rows is not None and rows.any():  # padding rows
            assert torch.equal(got[rows], expected[rows]) and not (got[~rows].abs().sum(-1) == 0).any(), name
            got, expected = got[~rows], expected[~rows]
        std, our_std = float(expected.std()), float(got.std())
        tolerance = max(0.1, 6 / (2 * got.numel()) ** 0.5) * std
        assert abs(our_std - std) <= tolerance, f"{class_name} {name}: std {our_std:.4g} vs {std:.4g}"
        assert abs(float(got.mean()) - float(expected.mean())) <= 5 * std / expected.numel() ** 0.5, name


# ---------------------------------------------------------------- dropout, checkpointing, embeddings, freezing
_SMALL = {
    "BertForSequenceClassification": lambda: leanformers.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20),
    "DistilBertForQuestionAnswering": lambda: leanformers.DistilBertConfig(
        vocab_size=60, dim=16, n_layers=2, n_heads=2, hidden_dim=20),
    "GPT2LMHeadModel": lambda: leanformers.GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2),
    "LlamaForCausalLM": lambda: leanformers.LlamaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                                        num_attention_heads=2, intermediate_size=20,
                                                        attention_dropout=0.2),
    "BartForConditionalGeneration": lambda: leanformers.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=20, decoder_ffn_dim=20, activation_dropout=0.1,
        attention_dropout=0.1),
    "T5ForConditionalGeneration": lambda: leanformers.T5Config(vocab_size=60, d_model=16, d_kv=8, num_heads=2,
                                                               num_layers=2, d_ff=20, decoder_start_token_id=0),
    "DebertaV2ForSequenceClassification": lambda: leanformers.Config(
        model_type="deberta-v2", vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=32, relative_attention=True, pos_att_type=["p2c", "c2p"],
        position_buckets=8, max_relative_positions=-1, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        hidden_act="gelu", layer_norm_eps=1e-7, type_vocab_size=0),
}


def _step_inputs(class_name):
    ids = torch.randint(4, 60, (2, 7), generator=torch.Generator().manual_seed(0))
    if "QuestionAnswering" in class_name:
        return dict(input_ids=ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 5]))
    if "Sequence" in class_name:
        return dict(input_ids=ids, labels=torch.tensor([0, 1]))
    return dict(input_ids=ids, labels=ids)


@pytest.mark.parametrize("class_name", sorted(_SMALL))
def test_dropout_is_on_in_train_and_off_in_eval(class_name, monkeypatch):
    """train(): the config's dropout changes every forward; eval(): none runs at all (not even a call)."""
    model = getattr(leanformers, class_name)(_SMALL[class_name]())
    inputs = _step_inputs(class_name)
    assert model.training
    first, second = model(**inputs).loss, model(**inputs).loss
    assert not torch.equal(first, second)
    model.eval()
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda *a, **k: pytest.fail("dropout ran in eval()"))
    with torch.no_grad():
        assert torch.equal(model(**inputs).loss, model(**inputs).loss)


@pytest.mark.parametrize("class_name", sorted(_SMALL))
def test_zero_dropout_train_equals_eval(class_name):
    """With every dropout probability at 0, train() computes what eval() does (no other train-mode effect)."""
    config = _SMALL[class_name]()
    for key in list(config.to_dict()):
        if "dropout" in key or key.endswith("pdrop") or key.endswith("_prob") and "dropout" in key:
            setattr(config, key, 0.0)
    model = getattr(leanformers, class_name)(config)
    inputs = _step_inputs(class_name)
    trained = model(**inputs).loss
    with torch.no_grad():
        assert torch.allclose(trained, model.eval()(**inputs).loss, atol=1e-6)


@pytest.mark.parametrize("class_name", sorted(_SMALL))
def test_gradient_checkpointing_gives_the_same_gradients(class_name):
    model = getattr(leanformers, class_name)(_SMALL[class_name]())
    inputs = _step_inputs(class_name)

    def grads():
        model.zero_grad()
        torch.manual_seed(3)  # the same dropout masks: checkpoint replays the RNG state on recomputation
        model(**inputs).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5), name
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


@pytest.mark.parametrize("class_name", ["BertForMaskedLM", "GPT2LMHeadModel", "BartForConditionalGeneration",
                                        "LlamaForCausalLM", "T5ForConditionalGeneration"])
@pytest.mark.parametrize("mean_resizing", [True, False])
def test_resize_token_embeddings_as_transformers(class_name, mean_resizing):
    """The same resize on the oracle and on ours (same starting weights): the kept rows, a tied head still tied,
    config.vocab_size, the new rows' statistics (the old rows' mean, or normal(0, init std)), equal logits on old
    ids, and the new shapes against transformers'."""
    hf_config = {"BertForMaskedLM": lambda: transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1,
                                                                     num_attention_heads=2, intermediate_size=20),
                 "LlamaForCausalLM": lambda: transformers.LlamaConfig(vocab_size=60, hidden_size=16,
                                                                      num_hidden_layers=1, num_attention_heads=2,
                                                                      intermediate_size=20)}.get(class_name)
    config = hf_config() if hf_config else getattr(transformers, _SMALL[class_name]().__class__.__name__)(
        **{k: v for k, v in _SMALL[class_name]().to_dict().items() if k not in ("id2label", "label2id")})
    torch.manual_seed(0)
    theirs = getattr(transformers, class_name)(config).eval()
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        ours = getattr(leanformers, class_name).from_pretrained(save_tiny(theirs, folder))
    old = ours.get_input_embeddings().weight.detach().clone()
    torch.manual_seed(1)
    theirs.resize_token_embeddings(70, pad_to_multiple_of=8, mean_resizing=mean_resizing)
    returned = ours.resize_token_embeddings(70, pad_to_multiple_of=8, mean_resizing=mean_resizing)
    assert returned is ours.get_input_embeddings() and returned.weight.shape == (72, old.shape[1])
    assert ours.config.vocab_size == theirs.config.vocab_size == 72
    assert torch.equal(returned.weight[:60], old)
    new_rows = returned.weight[60:].detach()
    if mean_resizing:
        assert torch.allclose(new_rows, old.mean(0).expand_as(new_rows), atol=1e-3)
    else:
        expected_std = float(theirs.get_input_embeddings().weight[60:].detach().std())  # 192 draws: within 30%
        assert abs(float(new_rows.std()) - expected_std) < 0.3 * expected_std
    output = ours.get_output_embeddings()
    assert output is not None and output.weight.shape[0] == 72
    assert (output.weight is returned.weight) == bool(ours.tied_weights())
    their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in _checkpoint_shapes(ours).items() if k in their_shapes} == {
        k: their_shapes[k] for k in _checkpoint_shapes(ours) if k in their_shapes}
    ids = torch.randint(4, 60, (2, 5))
    extra = {"decoder_input_ids": ids} if "Generation" in class_name and "Llama" not in class_name else {}
    with torch.no_grad():
        ours.eval()
        got, expected = ours(input_ids=ids, **extra).logits, theirs(input_ids=ids, **extra).logits
    assert got.shape == expected.shape
    assert torch.allclose(got[..., :60], expected[..., :60], atol=1e-4)


def _checkpoint_shapes(model):
    from leanformers.saving import checkpoint_state_dict

    return checkpoint_state_dict(model)


def test_input_embeddings_and_freezing_the_base():
    model = leanformers.BertForSequenceClassification(_SMALL["BertForSequenceClassification"]())
    total = model.num_parameters()
    assert total == sum(p.numel() for p in model.parameters())
    assert model.bert is model.base_model is model.model
    assert model.num_parameters(exclude_embeddings=True) < total
    model.base_model.requires_grad_(False)  # the course's "freeze the body, train the head"
    head = sum(p.numel() for p in model.head.parameters())
    assert model.num_parameters(only_trainable=True) == head
    inputs = _step_inputs("BertForSequenceClassification")
    model(**inputs).loss.backward()
    assert all(p.grad is None for p in model.base_model.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    new = torch.nn.Embedding(60, 16)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new and model.get_output_embeddings() is None
    lm = leanformers.GPT2LMHeadModel(_SMALL["GPT2LMHeadModel"]())
    assert lm.transformer is lm.model and lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    lm.set_input_embeddings(torch.nn.Embedding(60, 16))
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # re-tied


def test_head_of_another_size_needs_ignore_mismatched_sizes(tmp_path):
    """num_labels that differs from the checkpoint's head: a clear error naming ignore_mismatched_sizes=True, which
    then draws a new head (reported as mismatched), the base model loaded."""
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
        num_labels=2)).eval()
    folder = save_tiny(theirs, tmp_path / "two")
    with pytest.raises(ValueError, match="ignore_mismatched_sizes=True"):
        leanformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5,
                                                                         ignore_mismatched_sizes=True)
    assert ours.config.num_labels == 5 and ours.head.out.weight.shape == (5, 16)
    assert sorted(ours.loading_info["mismatched_keys"]) == ["head.out.bias", "head.out.weight"]
    assert torch.equal(ours.model.embeddings.word.weight, theirs.bert.embeddings.word_embeddings.weight)
    assert float(ours.head.out.bias.abs().sum()) == 0.0 and ours.head.out.weight.std() > 0


# ---------------------------------------------------------------- config classes
# keys transformers derives at construction (not defaults a config.json would carry)
_DERIVED = {"head_dim", "num_key_value_heads", "layer_types", "sliding_window", "id2label", "label2id",
            "tie_projs", "dense_act_fn", "is_gated_act", "max_window_layers", "use_sliding_window"}


@pytest.mark.parametrize("name", sorted(set(leanformers.config.CONFIG_CLASSES) - {"EncoderDecoderConfig"}))
def test_config_classes_have_transformers_defaults(name):
    """`BertConfig()` etc.: every default transformers' class sets (sizes, dropout, init, token ids) is ours."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(transformers, name)()
    base = transformers.PretrainedConfig().to_dict()
    expected = {k: v for k, v in theirs.to_dict().items()
                if (k not in base or base[k] != v) and k not in _DERIVED and k != "transformers_version"}
    ours = getattr(leanformers, name)()
    assert type(ours).__name__ == name and ours.model_type == theirs.model_type
    wrong = {k: (getattr(ours, k, "missing"), v) for k, v in expected.items() if getattr(ours, k, "missing") != v}
    assert not wrong, wrong
    assert ours.num_labels == theirs.num_labels


def test_config_class_with_labels_builds_a_model():
    config = leanformers.DistilBertConfig(n_layers=1, dim=32, hidden_dim=37, n_heads=2, num_labels=4)
    model = leanformers.DistilBertForSequenceClassification(config)
    assert model.head.out.out_features == 4 and model.config is config
    assert model.head.dropout == 0.2 and model.model.embeddings.dropout == 0.1  # seq_classif_dropout, dropout


def test_newly_initialized_warning_names_transformers_keys(tmp_path, caplog):
    """The "newly initialized" warning lists the head's weights under transformers' names, as transformers does."""
    config = transformers.BertConfig(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                                     vocab_size=50)
    transformers.BertModel(config).save_pretrained(tmp_path)
    expected = {"AutoModelForSequenceClassification": "['classifier.weight', 'classifier.bias']",
                "AutoModelForQuestionAnswering": "['qa_outputs.weight', 'qa_outputs.bias']"}
    for class_name, names in expected.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="leanformers"):
            getattr(leanformers, class_name).from_pretrained(tmp_path)
        assert f"newly initialized: {names}" in caplog.text, caplog.text
