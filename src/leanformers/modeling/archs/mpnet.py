"""MPNet: BERT's post-norm layout with RoBERTa's positions (counted past padding_idx) and no token types, plus T5's
bidirectional bucketed relative position bias (one table for the whole encoder, added to every layer's scores);
RoBERTa-style heads (lm_head, a dense + tanh classifier on <s>)."""
from ..spec import BERT_DROPOUT, ClassifierSpec, Spec
from .bert import ENCODER_TASKS

SPEC = Spec(
    dropout=BERT_DROPOUT,
    model_type="mpnet",
    family="encoder",
    base_prefix="mpnet",
    class_prefix="MPNet",
    tasks=ENCODER_TASKS,
    position="learned",
    positions_from_padding=True,
    relative_bias=True,
    embedding_norm=True,
    pooler=True,
    mlm_act="gelu",
    classifier=ClassifierSpec(pool="first", dense_act="tanh"),
    multiple_choice=ClassifierSpec(pool="pooler"),
    renames={
        "embeddings.word_embeddings": "embeddings.word",
        "embeddings.position_embeddings": "embeddings.position",
        "embeddings.LayerNorm": "embeddings.norm",
        "encoder.relative_attention_bias": "relative_bias.embedding",
        "encoder.layer.{}.attention.attn.q": "layers.{}.attention.q",
        "encoder.layer.{}.attention.attn.k": "layers.{}.attention.k",
        "encoder.layer.{}.attention.attn.v": "layers.{}.attention.v",
        "encoder.layer.{}.attention.attn.o": "layers.{}.attention.o",
        "encoder.layer.{}.attention.LayerNorm": "layers.{}.attention_norm",
        "encoder.layer.{}.intermediate.dense": "layers.{}.mlp.up",
        "encoder.layer.{}.output.dense": "layers.{}.mlp.down",
        "encoder.layer.{}.output.LayerNorm": "layers.{}.mlp_norm",
        "pooler.dense": "pooler",
    },
    head_renames={"classifier": "out", "qa_outputs": "out"},
    task_head_renames={
        "masked_lm": {
            "lm_head.dense": "dense",
            "lm_head.layer_norm": "norm",
            "lm_head.decoder.weight": "decoder.weight",
            "lm_head.decoder.bias": "bias",
            "lm_head.bias": "bias",
        },
        "sequence_classification": {"classifier.dense": "dense", "classifier.out_proj": "out"},
    },
)
