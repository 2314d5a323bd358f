"""Transformer-XL (`transfo-xl`): relative positional attention over a segment memory, adaptive embedding and
adaptive softmax. Its stack, blocks and LM head differ from every other architecture; they live in
modeling/transfo_xl.py and are wired in through `model_class`. Only the checkpoint names are declared here."""
import re

from ..spec import ClassifierSpec, Spec
from ..transfo_xl import TransfoXLPreTrainedModel, setting

_LAYER_BIAS = re.compile(r"^model\.layers\.\d+\.attention\.(r_[wr]_bias)$")


def shared_position_biases(state_dict, config):
    """untie_r=False: every layer holds the stack's one r_w_bias / r_r_bias. A checkpoint may store that shared
    tensor under a layer's name only (safetensors drops duplicates); read it back into the stack's name."""
    if setting(config, "untie_r"):
        return state_dict
    out = {}
    for name, tensor in state_dict.items():
        m = _LAYER_BIAS.match(name)
        out.setdefault(f"model.{m.group(1)}" if m else name, tensor)
    return out


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
    convert=shared_position_biases,
)
