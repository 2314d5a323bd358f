"""ELECTRA: BERT's layout, embeddings in embedding_size projected to hidden_size when they differ, no pooler.

Discriminator checkpoints (ElectraForPreTraining: `discriminator_predictions`) and generator checkpoints
(ElectraForMaskedLM: `generator_predictions` + `generator_lm_head`) both load; heads are dense+gelu on the first token.
"""
from ..spec import BERT_DROPOUT, ClassifierSpec, Spec
from .bert import BERT_LAYER_RENAMES, ENCODER_TASKS, QA_HEAD

SPEC = Spec(
    model_type="electra",
    family="encoder",
    base_prefix="electra",
    class_prefix="Electra",
    tasks=(*ENCODER_TASKS, "pretraining"),
    position="learned",
    token_types=True,
    dropout=BERT_DROPOUT,
    padding_rows=("word",),
    embedding_norm=True,
    embedding_projection="if_sizes_differ",
    mlm_act="gelu",
    classifier=ClassifierSpec(pool="first", dense_act="gelu"),
    multiple_choice=ClassifierSpec(pool="first", dense_act="gelu"),  # sequence_summary (summary_activation gelu)
    renames={**BERT_LAYER_RENAMES, "embeddings_project": "embeddings.project"},
    head_renames={"classifier": "out", "qa_outputs": "out"},
    task_head_renames={
        "masked_lm": {
            "generator_predictions.dense": "dense",
            "generator_predictions.LayerNorm": "norm",
            "generator_lm_head.weight": "decoder.weight",
            "generator_lm_head.bias": "bias",
        },
        "sequence_classification": {"classifier.dense": "dense", "classifier.out_proj": "out"},
        "multiple_choice": {"sequence_summary.summary": "dense"},
        "question_answering": QA_HEAD,
        "pretraining": {
            "discriminator_predictions.dense": "dense",
            "discriminator_predictions.dense_prediction": "out",
        },
    },
)
