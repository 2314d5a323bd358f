"""BERT: post-norm encoder, learned positions + token types + embedding LayerNorm, pooler."""
from ..spec import BERT_DROPOUT, ClassifierSpec, Spec

ENCODER_TASKS = ("base", "masked_lm", "sequence_classification", "token_classification", "question_answering",
                 "multiple_choice")

# transformers' BERT module paths, shared by the architectures that copied BERT's layout (RoBERTa, ELECTRA, ...)
BERT_LAYER_RENAMES = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
    "encoder.layer.{}.attention.self.query": "layers.{}.attention.q",
    "encoder.layer.{}.attention.self.key": "layers.{}.attention.k",
    "encoder.layer.{}.attention.self.value": "layers.{}.attention.v",
    "encoder.layer.{}.attention.output.dense": "layers.{}.attention.o",
    "encoder.layer.{}.attention.output.LayerNorm": "layers.{}.attention_norm",
    "encoder.layer.{}.intermediate.dense": "layers.{}.mlp.up",
    "encoder.layer.{}.output.dense": "layers.{}.mlp.down",
    "encoder.layer.{}.output.LayerNorm": "layers.{}.mlp_norm",
    # a decoder's cross-attention (is_decoder + add_cross_attention: BertLMHeadModel inside an EncoderDecoderModel)
    "encoder.layer.{}.crossattention.self.query": "layers.{}.cross_attention.q",
    "encoder.layer.{}.crossattention.self.key": "layers.{}.cross_attention.k",
    "encoder.layer.{}.crossattention.self.value": "layers.{}.cross_attention.v",
    "encoder.layer.{}.crossattention.output.dense": "layers.{}.cross_attention.o",
    "encoder.layer.{}.crossattention.output.LayerNorm": "layers.{}.cross_attention_norm",
}

# the name each head's output layer has in transformers where the shared head_renames list several (saving)
QA_HEAD = {"qa_outputs": "out"}

SPEC = Spec(
    model_type="bert",
    family="encoder",
    base_prefix="bert",
    class_prefix="Bert",
    tasks=ENCODER_TASKS,
    position="learned",
    token_types=True,
    dropout=BERT_DROPOUT,
    padding_rows=("word",),
    embedding_norm=True,
    pooler=True,
    classifier=ClassifierSpec(pool="pooler"),
    multiple_choice=ClassifierSpec(pool="pooler"),
    renames={**BERT_LAYER_RENAMES, "pooler.dense": "pooler"},
    head_renames={
        "cls.predictions.transform.dense": "dense",
        "cls.predictions.transform.LayerNorm": "norm",
        "cls.predictions.decoder.weight": "decoder.weight",
        "cls.predictions.bias": "bias",  # the name transformers saves (decoder.bias shares its storage)
        "cls.predictions.decoder.bias": "bias",
        "classifier": "out",
        "qa_outputs": "out",
    },
    task_head_renames={"question_answering": QA_HEAD},
)
