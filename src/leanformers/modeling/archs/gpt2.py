"""GPT-2: pre-norm decoder, learned positions, one fused qkv projection, a final LayerNorm; its Conv1D layers store
weights as (in, out), so they are transposed on loading."""
from ..spec import ClassifierSpec, Spec

# heads a decoder-only LM offers: the LM, and classifiers reading the last real token / every token
DECODER_TASKS = ("base", "causal_lm", "sequence_classification", "token_classification")

SPEC = Spec(
    model_type="gpt2",
    family="decoder",
    base_prefix="transformer",
    class_prefix="GPT2",
    class_names={"causal_lm": "GPT2LMHeadModel"},
    tasks=DECODER_TASKS,
    position="learned",
    pre_norm=True,
    final_norm=True,
    fused_qkv=True,
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "wte": "embeddings.word",
        "wpe": "embeddings.position",
        "h.{}.ln_1": "layers.{}.attention_norm",
        "h.{}.attn.c_attn": "layers.{}.attention.qkv",
        "h.{}.attn.c_proj": "layers.{}.attention.o",
        "h.{}.ln_2": "layers.{}.mlp_norm",
        "h.{}.mlp.c_fc": "layers.{}.mlp.up",
        "h.{}.mlp.c_proj": "layers.{}.mlp.down",
        "ln_f": "final_norm",
    },
    head_renames={"lm_head": "decoder", "score": "out", "classifier": "out"},
    transpose=("layers.{}.attention.qkv.weight", "layers.{}.attention.o.weight", "layers.{}.mlp.up.weight",
               "layers.{}.mlp.down.weight"),
)
