"""OPT: learned positions offset by 2 and counted from the attention mask (padding does not advance them), pre-norm
layers (post-norm when do_layer_norm_before=False, as opt-350m), ReLU MLP, a tied head."""
from ..layers import Embeddings
from ..spec import ClassifierSpec, Spec


class OPTEmbeddings(Embeddings):
    """Embeddings, refusing opt-350m's layout (word vectors narrower than the hidden size, projected in and out),
    which these blocks do not build, with an error that says so rather than a shape mismatch."""

    def __init__(self, spec, config):
        narrow = config.get("word_embed_proj_dim")
        if narrow not in (None, config.hidden_size):
            raise NotImplementedError(f"config.json: OPT with word_embed_proj_dim={narrow} != hidden_size="
                                      f"{config.hidden_size} (opt-350m's project_in / project_out) is not supported")
        super().__init__(spec, config)


def _final_norm(config) -> bool:
    return bool(config.get("do_layer_norm_before", True)) and not config.get("_remove_final_layer_norm", False)


SPEC = Spec(
    dropout={"embedding": ("dropout",), "attention": ("attention_dropout",), "hidden": ("dropout",)},
    model_type="opt",
    family="decoder",
    base_prefix="model",
    class_prefix="OPT",
    tasks=("base", "causal_lm", "sequence_classification", "question_answering"),
    position="learned",
    position_offset=2,
    positions_from_mask=True,
    embeddings_class=OPTEmbeddings,
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
