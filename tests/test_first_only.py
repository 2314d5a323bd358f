"""A classifier that reads position 0 only (first token or pooler) gets a last block that computes that row alone:
logits still equal the oracle's, padded batches equal single runs, the restricted path is really taken, and the
narrowed block is right for every block kind the core builds (pre-norm, fused qkv, rotary + GQA, relative bias,
cross-attention), not only for the post-norm encoders that use it today."""
from dataclasses import replace

import pytest
import torch
import transformers

import leanformers
from leanformers.config import Config
from leanformers.modeling.auto import spec_for
from leanformers.modeling.transformer import Transformer
from oracle import assert_close, assert_padded_equals_alone, max_diff, random_inputs, save_tiny
from test_encoders import TINY, _inputs, _oracle, _run

HEADS = ["ForSequenceClassification", "ForMultipleChoice"]


def _last_mlp_inputs(stack):
    """Records the shape of every input to the stack's last block MLP (ALBERT runs that block more than once)."""
    seen = []
    stack.layers[stack.schedule[-1][-1]].mlp.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    return seen


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("head", HEADS)
def test_logits_equal_oracle_on_the_first_row_path(arch, head, tmp_path):
    theirs = _oracle(arch, head)
    ours = getattr(leanformers, TINY[arch][0] + head).from_pretrained(save_tiny(theirs, tmp_path / "ckpt"))
    ids, mask, extra = _inputs(theirs.config)
    seen = _last_mlp_inputs(ours.model)
    expected = _run(theirs, ids, mask, extra, head)
    assert_close(expected, _run(ours, ids, mask, extra, head), what=f"{arch}{head}")
    rows = ids.shape[0] * (3 if head == "ForMultipleChoice" else 1)
    assert seen[-1] == (rows, 1, theirs.config.hidden_size)  # the last block ran position 0 alone
    assert all(shape[1] == ids.shape[1] for shape in seen[:-1])  # earlier runs of a shared block: every position
    # asking for hidden states or attentions keeps every row (they show it), with the same logits
    seen.clear()
    full = _run(ours, ids, mask, extra, head, output_hidden_states=True, output_attentions=True)
    assert seen[-1][1] == ids.shape[1]
    assert_close(_run(theirs, ids, mask, extra, head, output_hidden_states=True, output_attentions=True), full,
                 what=f"{arch}{head} full path")


@pytest.mark.parametrize("arch", sorted(TINY))
def test_padded_batch_equals_alone(arch, tmp_path):
    theirs = _oracle(arch, "ForSequenceClassification")
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(save_tiny(theirs, tmp_path / "ckpt"))
    ids, mask, extra = _inputs(theirs.config, batch=4, length=11, seed=1)
    seen = _last_mlp_inputs(ours.model)
    assert_padded_equals_alone(ours, ids, mask, **extra)
    assert sum(shape[1] == 1 for shape in seen) == 1 + ids.shape[0]  # the batch, then each row alone


def test_other_heads_and_base_model_keep_every_row(tmp_path):
    folder = save_tiny(_oracle("bert", "ForSequenceClassification"), tmp_path / "ckpt")
    ids, mask, extra = _inputs(transformers.BertConfig.from_pretrained(folder))
    for auto in (leanformers.AutoModel, leanformers.AutoModelForTokenClassification):
        model = auto.from_pretrained(folder)
        seen = _last_mlp_inputs(model.model)
        _run(model, ids, mask, extra, "Model")
        assert seen[-1][1] == ids.shape[1], auto.__name__


# block kinds the core builds, each as a non-causal stack: (model_type, oracle config, spec changes)
BLOCK_KINDS = {
    "post-norm": ("bert", transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40), {}),
    "pre-norm + final norm": ("bert", transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40),
        {"pre_norm": True, "final_norm": True}),
    "fused qkv (GPT-2)": ("gpt2", transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4), {}),
    "rotary + GQA + gated (Llama)": ("llama", transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=40), {}),
    "relative bias (T5)": ("t5", transformers.T5Config(
        vocab_size=50, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4), {}),
}


@pytest.mark.parametrize("kind", sorted(BLOCK_KINDS))
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_narrowed_block_equals_row_0_of_the_full_block(kind, cross):
    model_type, hf_config, changes = BLOCK_KINDS[kind]
    config = Config.from_dict(hf_config.to_dict())
    torch.manual_seed(0)
    stack = Transformer(replace(spec_for(model_type), **changes), config, cross=cross).eval()
    for p in stack.parameters():  # random norms too, so that a norm applied to the wrong rows would show
        torch.nn.init.normal_(p, std=0.2)
    ids, mask = random_inputs(config.vocab_size, batch=3, length=7)
    inputs = dict(input_ids=ids, attention_mask=mask)
    if cross:
        encoder_mask = torch.ones(3, 5, dtype=torch.long)
        encoder_mask[1, 3:] = 0
        inputs.update(encoder_hidden_states=torch.randn(3, 5, config.hidden_size), encoder_attention_mask=encoder_mask)
    with torch.no_grad():
        full = stack(**inputs).last_hidden_state
        first = stack(**inputs, first_only=True).last_hidden_state
    assert first.shape == (3, 1, config.hidden_size)
    assert max_diff(full[:, :1], first) <= 1e-5


def test_causal_stack_ignores_first_only():
    config = Config.from_dict(transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4).to_dict())
    stack = Transformer(spec_for("gpt2"), config, causal=True).eval()
    ids, mask = random_inputs(50, batch=2, length=6)
    with torch.no_grad():
        full = stack(input_ids=ids, attention_mask=mask).last_hidden_state
        asked = stack(input_ids=ids, attention_mask=mask, first_only=True).last_hidden_state
    assert torch.equal(full, asked)
