"""The model side of fine-tuning: loaded and fresh models are trainable (requires_grad, returned in eval mode), the
loss with labels backpropagates for every architecture x head, and the inference fast paths stay off while a
gradient flows (they key on torch.is_grad_enabled, not on frozen parameters)."""
import logging

import pytest
import torch
import transformers

import leanformers
from oracle import save_tiny
from tiny_matrix import CASES, assert_outputs_close, batch, output_keys

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
    loss = out.loss if out.get("loss") is not None else out[output_keys(case)[0]].pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in ours.named_parameters()}
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads.values()) > len(grads) // 2, name


@pytest.mark.parametrize("task", ["AutoModelForSequenceClassification", "AutoModelForCausalLM",
                                  "AutoModelForSeq2SeqLM"])
def test_fresh_model_trains(task):
    """from_config and Model(config) give trainable models in eval mode, as transformers' do."""
    config = {"AutoModelForSequenceClassification": dict(model_type="bert", vocab_size=50, hidden_size=16,
                                                         num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=20),
              "AutoModelForCausalLM": dict(model_type="gpt2", vocab_size=50, n_embd=16, n_layer=1, n_head=2),
              "AutoModelForSeq2SeqLM": dict(model_type="t5", vocab_size=50, d_model=16, d_kv=8, num_heads=2,
                                            num_layers=1, d_ff=20, decoder_start_token_id=0)}[task]
    model = getattr(leanformers, task).from_config(leanformers.Config(**config))
    assert not model.training and all(p.requires_grad for p in model.parameters())
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
