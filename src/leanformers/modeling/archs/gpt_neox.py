"""GPT-NeoX (Pythia): pre-LayerNorm decoder with a parallel residual (x + attn(norm1(x)) + mlp(norm2(x))), rotary on
the first rotary_pct of each head, and one query_key_value projection interleaved per head ([q | k | v] of head 0,
then head 1, ...), split into q, k, v on loading (SplitRows.inverse interleaves them back); an untied head."""
from ..fused import SplitRows
from ..spec import ClassifierSpec, Spec
from .gpt2 import DECODER_TASKS

SPEC = Spec(
    dropout={"attention": ("attention_dropout",), "hidden": ("hidden_dropout",),
             "token_classifier": ("classifier_dropout",)},
    model_type="gpt_neox",
    family="decoder",
    base_prefix="gpt_neox",
    class_prefix="GPTNeoX",
    tasks=DECODER_TASKS + ("question_answering",),
    position="rotary",
    pre_norm=True,
    final_norm=True,
    parallel_residual="use_parallel_residual",
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    classifier=ClassifierSpec(pool="last", bias=False),
    renames={
        "embed_in": "embeddings.word",
        "final_layer_norm": "final_norm",
        "layers.{}.input_layernorm": "layers.{}.attention_norm",
        "layers.{}.post_attention_layernorm": "layers.{}.mlp_norm",
        "layers.{}.attention.query_key_value": "layers.{}.attention.qkv_per_head",
        "layers.{}.attention.dense": "layers.{}.attention.o",
        "layers.{}.mlp.dense_h_to_4h": "layers.{}.mlp.up",
        "layers.{}.mlp.dense_4h_to_h": "layers.{}.mlp.down",
    },
    head_renames={"embed_out": "decoder", "score": "out", "classifier": "out", "qa_outputs": "out"},
    convert=SplitRows({"layers.{}.attention.qkv_per_head": ("layers.{}.attention.q", "layers.{}.attention.k",
                                                            "layers.{}.attention.v")}, per_head=True),
)
