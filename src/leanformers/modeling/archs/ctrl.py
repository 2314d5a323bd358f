"""CTRL: pre-norm decoder; word embeddings scaled by sqrt(d) plus fixed sinusoidal positions (computed, not stored);
ReLU MLP; an output projection tied to the embeddings but with a bias of its own."""
from ..spec import ClassifierSpec, Spec

SPEC = Spec(
    model_type="ctrl",
    family="decoder",
    base_prefix="transformer",
    class_prefix="CTRL",
    class_names={"causal_lm": "CTRLLMHeadModel"},
    tasks=("base", "causal_lm", "sequence_classification"),
    position="sinusoidal",
    token_types="words",  # token_type_ids, when given, add their word embeddings (as transformers)
    embedding_scale=True,
    dropout={"embedding": ("embd_pdrop",), "hidden": ("resid_pdrop",)},
    pre_norm=True,
    final_norm=True,
    mlp_act="relu",
    lm_bias=True,
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "w": "embeddings.word",
        "h.{}.multi_head_attention.Wq": "layers.{}.attention.q",
        "h.{}.multi_head_attention.Wk": "layers.{}.attention.k",
        "h.{}.multi_head_attention.Wv": "layers.{}.attention.v",
        "h.{}.multi_head_attention.dense": "layers.{}.attention.o",
        "h.{}.layernorm1": "layers.{}.attention_norm",
        "h.{}.ffn.0": "layers.{}.mlp.up",
        "h.{}.ffn.2": "layers.{}.mlp.down",
        "h.{}.layernorm2": "layers.{}.mlp_norm",
        "layernorm": "final_norm",
    },
    head_renames={"lm_head": "decoder", "classifier": "out"},
)
