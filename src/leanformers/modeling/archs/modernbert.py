"""ModernBERT: a pre-norm encoder without biases (LayerNorms too, unless norm_bias), rotary positions, global
attention every global_attn_every_n_layers layers and a local window (|q - k| <= local_attention / 2, its own rotary
base) in the others, a GeGLU MLP whose Wi holds [input | gate] (split on loading; SplitRows.inverse joins them),
no attention norm in layer 0 (the embeddings are normed), a final norm, and dense -> act -> norm prediction heads."""
from ..fused import SplitRows
from ..spec import Spec
from .bert import ENCODER_TASKS


def _norm(config) -> str:
    return "layer" if config.get("norm_bias", False) else "layer_no_bias"


def _is_global(config, depth: int) -> bool:
    return depth % config.get("global_attn_every_n_layers", 3) == 0


def _windows(config) -> list:
    return [None if _is_global(config, i) else config.get("local_attention", 128) // 2
            for i in range(config.num_hidden_layers)]


def _rope_theta(config) -> list:
    local = config.get("local_rope_theta") or config.get("global_rope_theta")
    return [config.get("global_rope_theta") if _is_global(config, i) else local
            for i in range(config.num_hidden_layers)]


SPEC = Spec(
    model_type="modernbert",
    family="encoder",
    base_prefix="model",
    class_prefix="ModernBert",
    tasks=ENCODER_TASKS,
    position="rotary",
    embedding_norm=True,
    norm=_norm,
    pre_norm=True,
    final_norm=True,
    hidden_states_normed=False,
    first_attention_norm=False,
    fused_qkv=True,
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    mlp_bias="mlp_bias",
    gated_mlp=True,
    layer_windows=_windows,
    layer_rope_theta=_rope_theta,
    prediction_head=True,
    renames={
        "embeddings.tok_embeddings": "embeddings.word",
        "embeddings.norm": "embeddings.norm",
        "layers.{}.attn_norm": "layers.{}.attention_norm",
        "layers.{}.attn.Wqkv": "layers.{}.attention.qkv",
        "layers.{}.attn.Wo": "layers.{}.attention.o",
        "layers.{}.mlp_norm": "layers.{}.mlp_norm",
        "layers.{}.mlp.Wi": "layers.{}.mlp.input_gate",
        "layers.{}.mlp.Wo": "layers.{}.mlp.down",
        "final_norm": "final_norm",
    },
    head_renames={"head.dense": "dense", "head.norm": "norm", "decoder": "decoder", "classifier": "out"},
    # act(input) * gate: the activated half is our "gate"
    convert=SplitRows({"layers.{}.mlp.input_gate": ("layers.{}.mlp.gate", "layers.{}.mlp.up")}),
)
