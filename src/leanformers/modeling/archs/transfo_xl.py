"""Transformer-XL (`transfo-xl`): relative positional attention over a segment memory, adaptive embedding and
adaptive softmax. Its stack, blocks and LM head differ from every other architecture; they live in
modeling/transfo_xl.py and are wired in through `model_class`. Only the checkpoint names are declared here."""
import re

import torch

from ..spec import ClassifierSpec, Spec
from ..transfo_xl import TransfoXLPreTrainedModel, setting, tie_projs

_LAYER_BIAS = re.compile(r"^model\.layers\.\d+\.attention\.(r_[wr]_bias)$")
_HEAD_TIED = re.compile(r"^head\.(decoder|projections)\.(\d+)(?:\.weight)?$")


def shared_tensors(state_dict, config):
    """A tensor the checkpoint's model shared between several names may be stored under one of them only
    (safetensors keeps each shared tensor once). Read it back under the name our model owns it by:
    - untie_r=False: every layer holds the stack's one r_w_bias / r_r_bias -> the stack's name;
    - tied output clusters / projections -> the input embedding's name (the head is tied to it after loading)."""
    out = {}
    for name, tensor in state_dict.items():
        m = _LAYER_BIAS.match(name)
        out.setdefault(f"model.{m.group(1)}" if m and not setting(config, "untie_r") else name, tensor)
    projections = [i for i, tied in enumerate(tie_projs(config)) if tied]
    for name, tensor in state_dict.items():
        m = _HEAD_TIED.match(name)
        if m is None:
            continue
        kind, i = m.group(1), int(m.group(2))
        if kind == "decoder" and config.get("tie_word_embeddings", True):
            out.setdefault(f"model.embeddings.word.{i}.weight", tensor)
        elif kind == "projections" and i in projections:
            out.setdefault(f"model.embeddings.projections.{0 if setting(config, 'div_val') == 1 else i}", tensor)
    return out


def init_std(name, config):
    """Transformer-XL's init: projections at proj_init_std, position biases and cluster weights at init_std."""
    if ".projections." in name:
        return config.get("proj_init_std", 0.01)
    if name.endswith(("r_w_bias", "r_r_bias", "cluster_weight")):
        return config.get("init_std", 0.02)
    return None


def store_inv_freq(state_dict, config, task):
    """Saving: transformers stores its position frequencies as a buffer (pos_emb.inv_freq); we compute them."""
    d_model = config.d_model
    inv_freq = 1 / (10000 ** (torch.arange(0.0, d_model, 2.0) / d_model))
    return {**state_dict, "model.pos_emb.inv_freq": inv_freq}


SPEC = Spec(
    model_type="transfo-xl",
    family="decoder",
    base_prefix="transformer",
    class_prefix="TransfoXL",
    class_names={"causal_lm": "TransfoXLLMHeadModel"},
    tasks=("base", "causal_lm", "sequence_classification"),
    model_class=TransfoXLPreTrainedModel,
    position="relative",
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "word_emb.emb_layers": "embeddings.word",
        "word_emb.emb_projs": "embeddings.projections",
        "r_w_bias": "r_w_bias",
        "r_r_bias": "r_r_bias",
        "pos_emb.inv_freq": "pos_emb.inv_freq",  # saving only: loading skips it (loading._IGNORED)
        "layers.{}.dec_attn.qkv_net": "layers.{}.attention.qkv",
        "layers.{}.dec_attn.r_net": "layers.{}.attention.r",
        "layers.{}.dec_attn.o_net": "layers.{}.attention.o",
        "layers.{}.dec_attn.r_w_bias": "layers.{}.attention.r_w_bias",
        "layers.{}.dec_attn.r_r_bias": "layers.{}.attention.r_r_bias",
        "layers.{}.dec_attn.layer_norm": "layers.{}.attention_norm",
        "layers.{}.pos_ff.CoreNet.0": "layers.{}.mlp.up",
        "layers.{}.pos_ff.CoreNet.3": "layers.{}.mlp.down",
        "layers.{}.pos_ff.layer_norm": "layers.{}.mlp_norm",
    },
    head_renames={
        "crit.cluster_weight": "cluster_weight",
        "crit.cluster_bias": "cluster_bias",
        "crit.out_layers": "decoder",
        "crit.out_projs": "projections",
        "score": "out",
    },
    convert=shared_tensors,
    unconvert=store_inv_freq,
    init_std=init_std,
)
