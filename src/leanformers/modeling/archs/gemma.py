"""Gemma and Gemma 2: Llama's layout with embeddings scaled by sqrt(hidden_size), RMSNorms stored as w - 1 and applied
as (1 + w), a tied head. Gemma 2 adds a norm after attention and after the MLP (four per layer), scores scaled by
query_pre_attn_scalar ** -0.5 and soft-capped, a sliding window on alternate layers, and soft-capped logits."""
from dataclasses import replace

from .llama import LLAMA


def _layer_type_windows(config) -> list:
    """Gemma 2: config.layer_types (default: even layers "sliding_attention", odd ones "full_attention")."""
    types = config.get("layer_types") or [
        "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(config.num_hidden_layers)]
    return [config.get("sliding_window") if kind == "sliding_attention" else None for kind in types]


GEMMA = replace(
    LLAMA,
    model_type="gemma",
    class_prefix="Gemma",
    norm="rms_offset",
    embedding_scale=True,
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    mlp_bias=False,
)

GEMMA2 = replace(
    GEMMA,
    model_type="gemma2",
    class_prefix="Gemma2",
    sandwich_norm=True,
    attention_scale="query_pre_attn_scalar",
    attention_softcap="attn_logit_softcapping",
    logit_softcap="final_logit_softcapping",
    layer_windows=_layer_type_windows,
    renames={
        **LLAMA.renames,
        "layers.{}.post_attention_layernorm": "layers.{}.attention_post_norm",
        "layers.{}.pre_feedforward_layernorm": "layers.{}.mlp_norm",
        "layers.{}.post_feedforward_layernorm": "layers.{}.mlp_post_norm",
    },
)

SPECS = {"gemma": GEMMA, "gemma2": GEMMA2}
SPEC = GEMMA
