"""DistilBERT: BERT without token types or pooler, its own module names, a relu pre-classifier.

`sinusoidal_pos_embds` checkpoints still store the position table; if one lacks it, the fixed table is filled in.
"""
from ..layers import sinusoidal_table
from ..spec import ClassifierSpec, Spec
from .bert import ENCODER_TASKS, QA_HEAD

# pre_classifier -> relu -> dropout -> classifier
_CLASSIFIER = ClassifierSpec(pool="first", dense_act="relu", dropout_first=False)


def _fill_sinusoidal_positions(state_dict, config):
    name = "model.embeddings.position.weight"
    if config.get("sinusoidal_pos_embds") and name not in state_dict:
        state_dict[name] = sinusoidal_table(config.max_position_embeddings, config.hidden_size, interleaved=True)
    return state_dict


SPEC = Spec(
    model_type="distilbert",
    family="encoder",
    base_prefix="distilbert",
    class_prefix="DistilBert",
    tasks=ENCODER_TASKS,
    position="learned",
    embedding_norm=True,
    dropout={"embedding": ("dropout",), "attention": ("attention_dropout",), "hidden": ("dropout",),
             "classifier": ("seq_classif_dropout",), "token_classifier": ("dropout",), "qa": ("qa_dropout",)},
    padding_rows=("word",),
    classifier=_CLASSIFIER,
    multiple_choice=_CLASSIFIER,
    convert=_fill_sinusoidal_positions,
    renames={
        "embeddings.word_embeddings": "embeddings.word",
        "embeddings.position_embeddings": "embeddings.position",
        "embeddings.LayerNorm": "embeddings.norm",
        "transformer.layer.{}.attention.q_lin": "layers.{}.attention.q",
        "transformer.layer.{}.attention.k_lin": "layers.{}.attention.k",
        "transformer.layer.{}.attention.v_lin": "layers.{}.attention.v",
        "transformer.layer.{}.attention.out_lin": "layers.{}.attention.o",
        "transformer.layer.{}.sa_layer_norm": "layers.{}.attention_norm",
        "transformer.layer.{}.ffn.lin1": "layers.{}.mlp.up",
        "transformer.layer.{}.ffn.lin2": "layers.{}.mlp.down",
        "transformer.layer.{}.output_layer_norm": "layers.{}.mlp_norm",
    },
    head_renames={"classifier": "out", "qa_outputs": "out"},
    task_head_renames={
        "masked_lm": {
            "vocab_transform": "dense",
            "vocab_layer_norm": "norm",
            "vocab_projector.weight": "decoder.weight",
            "vocab_projector.bias": "bias",
        },
        "sequence_classification": {"pre_classifier": "dense"},
        "multiple_choice": {"pre_classifier": "dense"},
        "question_answering": QA_HEAD,
    },
)
