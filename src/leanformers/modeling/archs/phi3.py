"""Phi-3: Llama's layout with one fused qkv projection ([q | k | v] rows, as ours) and one fused gate_up projection
([gate | up] rows, split on loading; SplitRows.inverse joins them back); a sliding window on every layer when the
config sets one; optional partial rotary (partial_rotary_factor)."""
from dataclasses import replace

from ..fused import SplitRows
from .llama import LLAMA, _mistral_windows

_RENAMES = {k: v for k, v in LLAMA.renames.items() if ".self_attn." not in k and ".mlp." not in k}

SPEC = replace(
    LLAMA,
    model_type="phi3",
    class_prefix="Phi3",
    fused_qkv=True,
    qkv_bias=False,
    out_bias=False,
    mlp_bias=False,
    layer_windows=_mistral_windows,
    renames={
        **_RENAMES,
        "layers.{}.self_attn.qkv_proj": "layers.{}.attention.qkv",
        "layers.{}.self_attn.o_proj": "layers.{}.attention.o",
        "layers.{}.mlp.gate_up_proj": "layers.{}.mlp.gate_up",
        "layers.{}.mlp.down_proj": "layers.{}.mlp.down",
    },
    convert=SplitRows({"layers.{}.mlp.gate_up": ("layers.{}.mlp.gate", "layers.{}.mlp.up")}),
)
