"""GPT-2: pre-norm decoder, learned positions, one fused qkv projection, a final LayerNorm; its Conv1D layers store
weights as (in, out), so they are transposed on loading."""
import torch

from ..init import scaled_residual_std
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


def join_cross_attention_kv(state_dict: dict, config, task: str) -> dict:
    """Saving: keys and values back into the one (in, 2*out) Conv1D (already transposed back)."""
    out = {}
    for name, tensor in state_dict.items():
        if ".cross_attention.k." in name:
            out[name.replace(".k.", ".kv.")] = torch.cat([tensor, state_dict[name.replace(".k.", ".v.")]], dim=-1)
        elif ".cross_attention.v." not in name:
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
    dropout={"embedding": ("embd_pdrop",), "attention": ("attn_pdrop",), "hidden": ("resid_pdrop",),
             "token_classifier": ("classifier_dropout", "hidden_dropout", 0.1)},
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
    task_head_renames={"token_classification": {"classifier": "out"}, "question_answering": {"qa_outputs": "out"}},
    transpose=("layers.{}.attention.qkv.weight", "layers.{}.attention.o.weight", "layers.{}.mlp.up.weight",
               "layers.{}.mlp.down.weight", *(f"layers.{{}}.cross_attention.{p}.weight" for p in "qkvo")),
    init_std=scaled_residual_std(("layers.{}.attention.o.weight", "layers.{}.mlp.down.weight",
                                  "layers.{}.cross_attention.o.weight")),
    convert=split_cross_attention_kv,
    unconvert=join_cross_attention_kv,
)
