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
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning",
                                         "ignore:To copy construct from a tensor")]


@pytest.fixture(autouse=True)
def oracle_type_as(monkeypatch):
    """Transformer-XL's oracle calls `tensor.type_as(dtype=...)`, which this torch rejects; accept it here."""
    original = torch.Tensor.type_as
    monkeypatch.setattr(torch.Tensor, "type_as",
                        lambda self, other=None, dtype=None: self.to(dtype) if dtype is not None
                        else original(self, other))


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
    model = leanformers.BertModel.from_config(config)
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
