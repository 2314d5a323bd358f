"""Marian (opus-mt): BART's post-norm layers with fixed sinusoidal positions, sqrt(d_model) embedding scale and
final_logits_bias; the decoder may have its own vocabulary (share_encoder_decoder_embeddings=False)."""
from ..seq2seq import Seq2SeqModel, drop_stored_sinusoids, store_sinusoids, unshared_embedding_names
from ..spec import SEQ2SEQ_DROPOUT, Spec
from .bart import HEAD_RENAMES, seq2seq_renames


class MarianFamily(Seq2SeqModel):
    final_logits_bias = True


SPEC = Spec(
    model_type="marian",
    family="encoder-decoder",
    base_prefix="model",
    class_prefix="Marian",
    class_names={"seq2seq_lm": "MarianMTModel"},
    tasks=("base", "seq2seq_lm", "causal_lm"),
    model_class=MarianFamily,
    position="sinusoidal",
    dropout=SEQ2SEQ_DROPOUT,
    padding_rows=("word",),
    renames=seq2seq_renames(positions="sinusoid"),
    head_renames=HEAD_RENAMES,
    convert=drop_stored_sinusoids,
    unconvert=store_sinusoids,
    save_renames=unshared_embedding_names,
)
