"""ALBERT: factorised embeddings (embedding_size, then embedding_hidden_mapping_in to hidden_size) and layers shared
across depth: num_hidden_groups groups of inner_group_num layers (transformer.shared_schedule)."""
import re

from ..spec import BERT_DROPOUT, ClassifierSpec, Spec
from .bert import ENCODER_TASKS, QA_HEAD

_LAYER = "encoder.albert_layer_groups.{}.albert_layers.{}"
_GROUPED = re.compile(r"^model\.layers\.(\d+)\.(\d+)\.")  # model.layers.<group>.<inner>. from the renames below


def _flatten_groups(state_dict, config):
    """Our blocks are one flat list: group g's inner layer j is block g * inner_group_num + j."""
    inner = config.get("inner_group_num", 1)
    return {_GROUPED.sub(lambda m: f"model.layers.{int(m[1]) * inner + int(m[2])}.", k): v
            for k, v in state_dict.items()}


_FLAT = re.compile(r"^model\.layers\.(\d+)\.")


def _group_layers(state_dict, config, task):
    """Saving: flat block k is inner layer k % inner_group_num of group k // inner_group_num."""
    inner = config.get("inner_group_num", 1)
    return {_FLAT.sub(lambda m: f"model.layers.{int(m[1]) // inner}.{int(m[1]) % inner}.", k): v
            for k, v in state_dict.items()}


SPEC = Spec(
    model_type="albert",
    family="encoder",
    base_prefix="albert",
    class_prefix="Albert",
    tasks=ENCODER_TASKS,
    position="learned",
    token_types=True,
    dropout={**BERT_DROPOUT, "classifier": ("classifier_dropout_prob",)},
    padding_rows=("word",),
    embedding_norm=True,
    embedding_projection="always",
    shared_layers=True,
    pooler=True,
    classifier=ClassifierSpec(pool="pooler"),
    multiple_choice=ClassifierSpec(pool="pooler"),
    convert=_flatten_groups,
    unconvert=_group_layers,
    renames={
        "embeddings.word_embeddings": "embeddings.word",
        "embeddings.position_embeddings": "embeddings.position",
        "embeddings.token_type_embeddings": "embeddings.token_type",
        "embeddings.LayerNorm": "embeddings.norm",
        "encoder.embedding_hidden_mapping_in": "embeddings.project",
        f"{_LAYER}.attention.query": "layers.{}.{}.attention.q",
        f"{_LAYER}.attention.key": "layers.{}.{}.attention.k",
        f"{_LAYER}.attention.value": "layers.{}.{}.attention.v",
        f"{_LAYER}.attention.dense": "layers.{}.{}.attention.o",
        f"{_LAYER}.attention.LayerNorm": "layers.{}.{}.attention_norm",
        f"{_LAYER}.ffn": "layers.{}.{}.mlp.up",
        f"{_LAYER}.ffn_output": "layers.{}.{}.mlp.down",
        f"{_LAYER}.full_layer_layer_norm": "layers.{}.{}.mlp_norm",
        "pooler": "pooler",
    },
    head_renames={"classifier": "out", "qa_outputs": "out"},
    task_head_renames={
        "masked_lm": {
            "predictions.dense": "dense",
            "predictions.LayerNorm": "norm",
            "predictions.decoder.weight": "decoder.weight",
            "predictions.bias": "bias",
            "predictions.decoder.bias": "bias",
        },
        "question_answering": QA_HEAD,
    },
)
