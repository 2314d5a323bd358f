"""T5 v1.0 / v1.1 and mT5: pre-norm RMS layers without biases, no position embeddings but one learned relative
position bias per stack (in the first layer's attention, shared by all), unscaled attention scores, ReLU or
gated-GELU feed-forward, and (when tied) the decoder output scaled by d_model**-0.5 before the vocabulary."""
import dataclasses

from ..seq2seq import Seq2SeqModel, side_config
from ..spec import ClassifierSpec, Spec


def feed_forward(config) -> tuple[str, bool]:
    """config.feed_forward_proj ("relu", "gated-gelu", "gated-silu", ...) -> (activation, gated), as T5Config."""
    proj = config.get("feed_forward_proj", "relu")
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"config.feed_forward_proj={proj!r} is not valid: use 'ACT' or 'gated-ACT' (e.g. 'relu', "
                         "'gated-gelu')")
    return ("gelu_new" if proj == "gated-gelu" else parts[-1]), parts[0] == "gated" and len(parts) == 2


class T5Family(Seq2SeqModel):
    def side(self, config, side):
        act, gated = feed_forward(config)
        layers = config.get("num_layers")
        layers = layers if side == "encoder" else config.get("num_decoder_layers", layers)
        return dataclasses.replace(self.spec, gated_mlp=gated), side_config(
            config, side, hidden_size=config.get("d_model"), num_hidden_layers=layers,
            num_attention_heads=config.get("num_heads"), head_dim=config.get("d_kv"),
            intermediate_size=config.get("d_ff"), hidden_act=act,
            layer_norm_eps=config.get("layer_norm_epsilon", 1e-6))

    def output_scale(self) -> float:
        return self.config.d_model ** -0.5 if self.config.get("tie_word_embeddings", True) else 1.0


def _init_std(name: str, config) -> float | None:
    """T5's Mesh-TensorFlow init, scaled by initializer_factor: embeddings and the untied LM head at factor, the
    norms filled with factor, projections at factor over the square root of their input size."""
    factor, d_model = config.get("initializer_factor", 1.0), config.d_model
    heads_dim = config.num_heads * config.d_kv
    if name.endswith("norm.weight"):
        return factor
    if name.endswith(("embeddings.word.weight", "head.decoder.weight")):
        return factor
    if name.endswith(("attention.q.weight",)):
        return factor * (d_model * config.d_kv) ** -0.5
    if name.endswith(("attention.o.weight",)):
        return factor * heads_dim ** -0.5
    if name.endswith("mlp.down.weight"):
        return factor * config.d_ff ** -0.5
    if name.endswith((".weight",)) and not name.endswith("bias"):
        return factor * d_model ** -0.5  # k, v, mlp.up / gate, relative bias, classification and QA heads
    return None


def _gated_names(config) -> dict[str, str]:
    """Saving: a gated feed-forward's up projection is wi_1 (wi_0 the gate); a plain one's is wi."""
    if not feed_forward(config)[1]:
        return {}
    return {f"{side}.block.{{}}.layer.{2 if side == 'decoder' else 1}.DenseReluDense.wi_1": f"{side}.layers.{{}}.mlp.up"
            for side in ("encoder", "decoder")}


def _renames() -> dict[str, str]:
    renames = {"shared": "encoder.embeddings.word"}
    for side, cross in (("encoder", False), ("decoder", True)):
        block, layer = f"{side}.block.{{}}.layer", f"{side}.layers.{{}}"
        mlp = f"{block}.{2 if cross else 1}"
        renames.update({
            f"{side}.embed_tokens": f"{side}.embeddings.word",
            f"{side}.final_layer_norm": f"{side}.final_norm",
            f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias": f"{side}.relative_bias.embedding",
            f"{block}.0.SelfAttention": f"{layer}.attention",  # q, k, v, o: the same names as ours
            f"{block}.0.layer_norm": f"{layer}.attention_norm",
            f"{mlp}.DenseReluDense.wi": f"{layer}.mlp.up",
            f"{mlp}.DenseReluDense.wi_0": f"{layer}.mlp.gate",
            f"{mlp}.DenseReluDense.wi_1": f"{layer}.mlp.up",
            f"{mlp}.DenseReluDense.wo": f"{layer}.mlp.down",
            f"{mlp}.layer_norm": f"{layer}.mlp_norm",
        })
        if cross:
            renames[f"{block}.1.EncDecAttention"] = f"{layer}.cross_attention"
            renames[f"{block}.1.layer_norm"] = f"{layer}.cross_attention_norm"
    return renames


SPEC = Spec(
    model_type="t5",
    family="encoder-decoder",
    base_prefix="transformer",  # only T5ForSequenceClassification nests the base model; the others do not
    class_prefix="T5",
    tasks=("base", "seq2seq_lm", "sequence_classification", "question_answering", "encoder"),
    model_class=T5Family,
    unprefixed_tasks=("seq2seq_lm", "question_answering"),
    save_renames=_gated_names,
    init_std=_init_std,
    position="relative",
    norm="rms",
    dropout={**{role: ("dropout_rate",) for role in ("embedding", "attention", "hidden", "activation", "final")},
             "classifier": ("classifier_dropout",)},
    pre_norm=True,
    final_norm=True,
    qkv_bias=False,
    out_bias=False,
    mlp_bias=False,
    attention_scale=False,
    renames=_renames(),
    classifier=ClassifierSpec(pool="eos", dense_act="tanh"),
    head_renames={"lm_head": "decoder", "classification_head.dense": "dense", "classification_head.out_proj": "out",
                  "qa_outputs": "out"},
    task_head_renames={"question_answering": {"qa_outputs": "out"}},
)

SPECS = {"t5": SPEC, "mt5": dataclasses.replace(SPEC, model_type="mt5", class_prefix="MT5")}
