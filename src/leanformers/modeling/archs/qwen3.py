"""Qwen3: Qwen2's layout without qkv biases, plus an RMSNorm over each head's queries and keys (q_norm / k_norm)
before rotary; optional sliding window on the layers from max_window_layers on (as Qwen2)."""
from dataclasses import replace

from .llama import LLAMA, _qwen2_windows

SPEC = replace(
    LLAMA,
    model_type="qwen3",
    class_prefix="Qwen3",
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    mlp_bias=False,
    qk_norm=True,
    layer_windows=_qwen2_windows,
    renames={
        **LLAMA.renames,
        "layers.{}.self_attn.q_norm": "layers.{}.attention.q_norm",
        "layers.{}.self_attn.k_norm": "layers.{}.attention.k_norm",
    },
)
