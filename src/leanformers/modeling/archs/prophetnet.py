"""ProphetNet: a post-norm encoder and an n-gram decoder (modeling/prophetnet.py), learned positions counted from
pad_token_id + 1, embedding LayerNorm, one word-embedding table shared by encoder, decoder and (tied) LM head."""
from ..prophetnet import ProphetNetFamily
from ..spec import SEQ2SEQ_DROPOUT, Spec


PROJECTIONS = (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o"))


def _renames() -> dict[str, str]:
    renames = {"word_embeddings": "encoder.embeddings.word", "decoder.ngram_embeddings": "decoder.ngram_embeddings",
               "decoder.layers.{}.self_attn.relative_pos_embeddings": "decoder.layers.{}.attention.relative",
               "decoder.layers.{}.cross_attn_layer_norm": "decoder.layers.{}.cross_attention_norm"}
    for side in ("encoder", "decoder"):
        layer = f"{side}.layers.{{}}"
        renames.update({
            f"{side}.word_embeddings": f"{side}.embeddings.word",
            f"{side}.position_embeddings": f"{side}.embeddings.position",
            f"{side}.embeddings_layer_norm": f"{side}.embeddings.norm",
            f"{layer}.self_attn_layer_norm": f"{layer}.attention_norm",
            f"{layer}.feed_forward.intermediate": f"{layer}.mlp.up",
            f"{layer}.feed_forward.output": f"{layer}.mlp.down",
            f"{layer}.feed_forward_layer_norm": f"{layer}.mlp_norm",
        })
        attentions = (("self_attn", "attention"),) + ((("cross_attn", "cross_attention"),) if side == "decoder" else ())
        for theirs, ours in attentions:
            renames.update({f"{layer}.{theirs}.{t}_proj": f"{layer}.{ours}.{o}" for t, o in PROJECTIONS})
    return renames


SPEC = Spec(
    model_type="prophetnet",
    family="encoder-decoder",
    base_prefix="prophetnet",
    class_prefix="ProphetNet",
    tasks=("base", "seq2seq_lm"),
    model_class=ProphetNetFamily,
    position="learned",
    embedding_norm=True,
    dropout=SEQ2SEQ_DROPOUT,
    padding_rows=("word", "position"),
    renames=_renames(),
    head_renames={"lm_head": "decoder"},
)
