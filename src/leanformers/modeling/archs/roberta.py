"""RoBERTa and XLM-RoBERTa: BERT's layout with positions counted past padding_idx, a dense+tanh classifier on <s>,
and `lm_head` (gelu) for masked LM. XLM-RoBERTa differs only in its vocabulary and names."""
from ..spec import BERT_DROPOUT, ClassifierSpec, Spec
from .bert import BERT_LAYER_RENAMES, ENCODER_TASKS, QA_HEAD


def _spec(model_type: str, class_prefix: str) -> Spec:
    return Spec(
        model_type=model_type,
        family="encoder",
        base_prefix="roberta",
        class_prefix=class_prefix,
        tasks=ENCODER_TASKS,
        position="learned",
        positions_from_padding=True,
        dropout=BERT_DROPOUT,
        padding_rows=("word", "position"),
        token_types=True,
        embedding_norm=True,
        pooler=True,  # only the base model and multiple choice build it (model.uses_pooler)
        mlm_act="gelu",
        classifier=ClassifierSpec(pool="first", dense_act="tanh"),
        multiple_choice=ClassifierSpec(pool="pooler"),
        renames={**BERT_LAYER_RENAMES, "pooler.dense": "pooler"},
        head_renames={"classifier": "out", "qa_outputs": "out"},
        task_head_renames={
            "masked_lm": {
                "lm_head.dense": "dense",
                "lm_head.layer_norm": "norm",
                "lm_head.decoder.weight": "decoder.weight",
                "lm_head.bias": "bias",
                "lm_head.decoder.bias": "bias",
            },
            "sequence_classification": {"classifier.dense": "dense", "classifier.out_proj": "out"},
            "question_answering": QA_HEAD,
        },
    )


SPECS = {
    "roberta": _spec("roberta", "Roberta"),
    "xlm-roberta": _spec("xlm-roberta", "XLMRoberta"),
}
SPEC = SPECS["roberta"]
