"""Llama and the models that share its layout (Mistral, Qwen2): pre-RMSNorm decoder, rotary positions (with
`rope_scaling`), grouped-query attention, SwiGLU MLP, an untied head unless the config ties it."""
from dataclasses import replace

from ..spec import ClassifierSpec, Spec
from .gpt2 import DECODER_TASKS


def _mistral_windows(config) -> list:
    """Mistral: every layer attends to the last `sliding_window` positions (none when it is null)."""
    return [config.get("sliding_window")] * config.num_hidden_layers


def _qwen2_windows(config) -> list:
    """Qwen2: with use_sliding_window, the layers marked "sliding_attention" (by default those from
    max_window_layers on) use the window; the others attend to everything."""
    window = config.get("sliding_window") if config.get("use_sliding_window", False) else None
    n = config.num_hidden_layers
    types = config.get("layer_types") or [
        "sliding_attention" if window is not None and i >= config.get("max_window_layers", n) else "full_attention"
        for i in range(n)]
    return [window if kind == "sliding_attention" else None for kind in types]


LLAMA = Spec(
    model_type="llama",
    family="decoder",
    dropout={"attention": ("attention_dropout",), "token_classifier": ("classifier_dropout", "hidden_dropout", 0.1)},
    padding_rows=("word",),
    base_prefix="model",
    class_prefix="Llama",
    tasks=DECODER_TASKS,
    position="rotary",
    norm="rms",
    pre_norm=True,
    final_norm=True,
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    mlp_bias="mlp_bias",
    gated_mlp=True,
    tied_embeddings=True,  # only when config.tie_word_embeddings (False by default for these models)
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "embed_tokens": "embeddings.word",
        "layers.{}.input_layernorm": "layers.{}.attention_norm",
        "layers.{}.self_attn.q_proj": "layers.{}.attention.q",
        "layers.{}.self_attn.k_proj": "layers.{}.attention.k",
        "layers.{}.self_attn.v_proj": "layers.{}.attention.v",
        "layers.{}.self_attn.o_proj": "layers.{}.attention.o",
        "layers.{}.post_attention_layernorm": "layers.{}.mlp_norm",
        "layers.{}.mlp.gate_proj": "layers.{}.mlp.gate",
        "layers.{}.mlp.up_proj": "layers.{}.mlp.up",
        "layers.{}.mlp.down_proj": "layers.{}.mlp.down",
        "norm": "final_norm",
    },
    head_renames={"lm_head": "decoder", "score": "out"},
)

SPECS = {
    "llama": LLAMA,
    "mistral": replace(LLAMA, model_type="mistral", class_prefix="Mistral", qkv_bias=False, out_bias=False,
                       mlp_bias=False, layer_windows=_mistral_windows),
    "qwen2": replace(LLAMA, model_type="qwen2", class_prefix="Qwen2", qkv_bias=True, out_bias=False, mlp_bias=False,
                     layer_windows=_qwen2_windows),
}
SPEC = LLAMA
