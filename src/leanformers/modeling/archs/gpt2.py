"""GPT-2: pre-norm decoder, learned positions, one fused qkv projection, a final LayerNorm; its Conv1D layers store
weights as (in, out), so they are transposed on loading."""
from ..spec import ClassifierSpec, Spec

# heads a decoder-only LM offers: the LM, and classifiers reading the last real token / every token
DECODER_TASKS = ("base", "causal_lm", "sequence_classification", "token_classification")


def split_cross_attention_kv(state_dict: dict, config) -> dict:
    """GPT-2's cross-attention projects keys and values in one Conv1D, (in, 2*out) (not yet transposed): split it."""
    out = {}
    for name, tensor in state_dict.items():
        if ".cross_attention.kv." in name:
            keys, values = tensor.chunk(2, dim=-1)
            out[name.replace(".kv.", ".k.")], out[name.replace(".kv.", ".v.")] = keys, values
        else:
            out[name] = tensor
    return out


SPEC = Spec(
    model_type="gpt2",
    family="decoder",
    base_prefix="transformer",
    class_prefix="GPT2",
    class_names={"causal_lm": "GPT2LMHeadModel"},
    tasks=DECODER_TASKS + ("question_answering",),
    position="learned",
    token_types="words",  # token_type_ids, when given, add their word embeddings (as transformers)
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
        # cross-attention (add_cross_attention: the decoder of an EncoderDecoderModel); c_attn holds keys | values
        "h.{}.ln_cross_attn": "layers.{}.cross_attention_norm",
        "h.{}.crossattention.q_attn": "layers.{}.cross_attention.q",
        "h.{}.crossattention.c_attn": "layers.{}.cross_attention.kv",
        "h.{}.crossattention.c_proj": "layers.{}.cross_attention.o",
    },
    head_renames={"lm_head": "decoder", "score": "out", "classifier": "out", "qa_outputs": "out"},
    transpose=("layers.{}.attention.qkv.weight", "layers.{}.attention.o.weight", "layers.{}.mlp.up.weight",
               "layers.{}.mlp.down.weight", *(f"layers.{{}}.cross_attention.{p}.weight" for p in "qkvo")),
    convert=split_cross_attention_kv,
)
