"""BART (post-norm, learned positions offset by 2, embedding LayerNorm) and mBART (the same, pre-norm, with a final
LayerNorm in the encoder and the decoder); both have final_logits_bias and BART's eos-pooled classification head."""
import dataclasses

from ..seq2seq import Seq2SeqModel
from ..spec import SEQ2SEQ_DROPOUT, ClassifierSpec, Spec


def layer_renames(side: str) -> dict[str, str]:
    """fairseq-style layer names (BART, mBART, Marian, Pegasus, M2M100) of the encoder or decoder -> ours."""
    ours = {"self_attn_layer_norm": "attention_norm", "encoder_attn_layer_norm": "cross_attention_norm",
            "fc1": "mlp.up", "fc2": "mlp.down", "final_layer_norm": "mlp_norm"}
    for theirs, mine in (("self_attn", "attention"), ("encoder_attn", "cross_attention")):
        ours.update({f"{theirs}.{p}_proj": f"{mine}.{p}" for p in "qkv"})
        ours[f"{theirs}.out_proj"] = f"{mine}.o"
    return {f"{side}.layers.{{}}.{k}": f"{side}.layers.{{}}.{v}" for k, v in ours.items()}


def seq2seq_renames(positions: str | None = "position") -> dict[str, str]:
    """The whole fairseq-style stack: shared / per-side word embeddings, positions, embedding and final norms."""
    renames = {"shared": "encoder.embeddings.word"}
    for side in ("encoder", "decoder"):
        renames.update(layer_renames(side))
        renames[f"{side}.embed_tokens"] = f"{side}.embeddings.word"
        renames[f"{side}.layernorm_embedding"] = f"{side}.embeddings.norm"
        renames[f"{side}.layer_norm"] = f"{side}.final_norm"
        if positions:
            renames[f"{side}.embed_positions"] = f"{side}.embeddings.{positions}"
    return renames


HEAD_RENAMES = {"lm_head": "decoder", "final_logits_bias": "final_logits_bias",
                "classification_head.dense": "dense", "classification_head.out_proj": "out", "qa_outputs": "out"}


class BartFamily(Seq2SeqModel):
    final_logits_bias = True
    decoder_inputs_from_input_ids = True


class MBartFamily(BartFamily):
    wrap_last_token = True


SPEC = Spec(
    model_type="bart",
    family="encoder-decoder",
    base_prefix="model",
    class_prefix="Bart",
    tasks=("base", "seq2seq_lm", "sequence_classification", "question_answering", "causal_lm"),
    model_class=BartFamily,
    position="learned",
    position_offset=2,
    dropout=SEQ2SEQ_DROPOUT,
    padding_rows=("word",),
    embedding_norm=True,
    classifier=ClassifierSpec(pool="eos", dense_act="tanh"),
    renames=seq2seq_renames(),
    head_renames=HEAD_RENAMES,
    task_head_renames={"question_answering": {"qa_outputs": "out"}},
)

SPECS = {
    "bart": SPEC,
    "mbart": dataclasses.replace(SPEC, model_type="mbart", class_prefix="MBart", model_class=MBartFamily,
                                 pre_norm=True, final_norm=True),
}
