"""OPT: learned positions offset by 2 and counted from the attention mask (padding does not advance them), pre-norm
layers (post-norm when do_layer_norm_before=False, as opt-350m), ReLU MLP, a tied head."""
from ..spec import ClassifierSpec, Spec


def _final_norm(config) -> bool:
    return bool(config.get("do_layer_norm_before", True)) and not config.get("_remove_final_layer_norm", False)


SPEC = Spec(
    model_type="opt",
    family="decoder",
    base_prefix="model",
    class_prefix="OPT",
    tasks=("base", "causal_lm", "sequence_classification", "question_answering"),
    position="learned",
    position_offset=2,
    positions_from_mask=True,
    pre_norm="do_layer_norm_before",
    final_norm=_final_norm,
    qkv_bias="enable_bias",
    out_bias="enable_bias",
    mlp_bias="enable_bias",
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "decoder.embed_tokens": "embeddings.word",
        "decoder.embed_positions": "embeddings.position",
        "decoder.final_layer_norm": "final_norm",
        "decoder.layers.{}.self_attn.q_proj": "layers.{}.attention.q",
        "decoder.layers.{}.self_attn.k_proj": "layers.{}.attention.k",
        "decoder.layers.{}.self_attn.v_proj": "layers.{}.attention.v",
        "decoder.layers.{}.self_attn.out_proj": "layers.{}.attention.o",
        "decoder.layers.{}.self_attn_layer_norm": "layers.{}.attention_norm",
        "decoder.layers.{}.fc1": "layers.{}.mlp.up",
        "decoder.layers.{}.fc2": "layers.{}.mlp.down",
        "decoder.layers.{}.final_layer_norm": "layers.{}.mlp_norm",
    },
    head_renames={"lm_head": "decoder", "score": "out", "qa_outputs": "out"},
)
