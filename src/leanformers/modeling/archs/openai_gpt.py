"""GPT (the first one): post-norm decoder with learned positions and GPT-2's Conv1D layers, no final norm."""
from ..spec import ClassifierSpec, Spec

SPEC = Spec(
    model_type="openai-gpt",
    family="decoder",
    base_prefix="transformer",
    class_prefix="OpenAIGPT",
    class_names={"causal_lm": "OpenAIGPTLMHeadModel"},
    tasks=("base", "causal_lm", "sequence_classification"),
    position="learned",
    token_types="words",  # token_type_ids, when given, add their word embeddings (as transformers)
    fused_qkv=True,
    dropout={"embedding": ("embd_pdrop",), "attention": ("attn_pdrop",), "hidden": ("resid_pdrop",)},
    act_names={"gelu": "gelu_new"},  # its "gelu" is the tanh approximation
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "tokens_embed": "embeddings.word",
        "positions_embed": "embeddings.position",
        "h.{}.attn.c_attn": "layers.{}.attention.qkv",
        "h.{}.attn.c_proj": "layers.{}.attention.o",
        "h.{}.ln_1": "layers.{}.attention_norm",
        "h.{}.mlp.c_fc": "layers.{}.mlp.up",
        "h.{}.mlp.c_proj": "layers.{}.mlp.down",
        "h.{}.ln_2": "layers.{}.mlp_norm",
    },
    head_renames={"lm_head": "decoder", "score": "out"},
    transpose=("layers.{}.attention.qkv.weight", "layers.{}.attention.o.weight", "layers.{}.mlp.up.weight",
               "layers.{}.mlp.down.weight"),
)
