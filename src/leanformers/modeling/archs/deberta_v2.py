"""DeBERTa-v2 / v3 (model_type "deberta-v2"): BERT's post-norm layers with disentangled attention (content, c2p
and p2c scores over one relative-position table, log-bucketed distances), embeddings projected before their norm,
no absolute positions in v3 (position_biased_input=False), a dense + gelu "ContextPooler" on [CLS] for the
classifiers, and BERT's (legacy) or lm_predictions' masked-LM head."""
from ..disentangled import DebertaEmbeddings, DisentangledAttention
from ..spec import BERT_DROPOUT, ClassifierSpec, Spec
from .bert import ENCODER_TASKS

_LAYER = "encoder.layer.{}"
_MLM = {"dense": "dense", "LayerNorm": "norm"}

SPEC = Spec(
    model_type="deberta-v2",
    family="encoder",
    base_prefix="deberta",
    class_prefix="DebertaV2",
    tasks=ENCODER_TASKS,
    position="learned",  # position ids are made; DebertaEmbeddings adds them only if position_biased_input
    token_types=True,    # accepted always (its tokenizer returns them); used only if type_vocab_size > 0
    embedding_projection="if_sizes_differ",  # the masked-LM transform maps to embedding_size
    embeddings_class=DebertaEmbeddings,
    attention_class=DisentangledAttention,
    # ContextPooler (pooler_hidden_act: gelu); its own dropout (pooler_dropout, 0 by default) is not modelled
    classifier=ClassifierSpec(pool="first", dense_act="gelu", dropout_first=False),
    multiple_choice=ClassifierSpec(pool="first", dense_act="gelu", dropout_first=False),
    # embeddings, attention probabilities (and the relative table: disentangled.py), each sublayer's output
    dropout={**BERT_DROPOUT, "classifier": ("cls_dropout", "hidden_dropout_prob"),
             "token_classifier": ("hidden_dropout_prob",)},
    renames={
        "embeddings.word_embeddings": "embeddings.word",
        "embeddings.position_embeddings": "embeddings.position",
        "embeddings.token_type_embeddings": "embeddings.token_type",
        "embeddings.embed_proj": "embeddings.project",
        "embeddings.LayerNorm": "embeddings.norm",
        "encoder.rel_embeddings": "attention_context.embedding",
        "encoder.LayerNorm": "attention_context.norm",
        f"{_LAYER}.attention.self.query_proj": "layers.{}.attention.q",
        f"{_LAYER}.attention.self.key_proj": "layers.{}.attention.k",
        f"{_LAYER}.attention.self.value_proj": "layers.{}.attention.v",
        f"{_LAYER}.attention.self.pos_key_proj": "layers.{}.attention.pos_key",
        f"{_LAYER}.attention.self.pos_query_proj": "layers.{}.attention.pos_query",
        f"{_LAYER}.attention.output.dense": "layers.{}.attention.o",
        f"{_LAYER}.attention.output.LayerNorm": "layers.{}.attention_norm",
        f"{_LAYER}.intermediate.dense": "layers.{}.mlp.up",
        f"{_LAYER}.output.dense": "layers.{}.mlp.down",
        f"{_LAYER}.output.LayerNorm": "layers.{}.mlp_norm",
    },
    head_renames={"classifier": "out", "qa_outputs": "out"},
    task_head_renames={
        "masked_lm": {
            **{f"cls.predictions.transform.{k}": v for k, v in _MLM.items()},  # legacy=True (the default)
            "cls.predictions.decoder.weight": "decoder.weight",
            "cls.predictions.decoder.bias": "bias",
            "cls.predictions.bias": "bias",
            **{f"lm_predictions.lm_head.{k}": v for k, v in _MLM.items()},  # legacy=False
            "lm_predictions.lm_head.bias": "bias",
        },
        "sequence_classification": {"pooler.dense": "dense"},
        "multiple_choice": {"pooler.dense": "dense"},
    },
)
