"""M2M100 (and NLLB checkpoints): pre-norm layers with final LayerNorms, and fairseq's sinusoidal positions, which are
computed (never stored) and counted past the padding like RoBERTa's; no final_logits_bias."""
from ..seq2seq import Seq2SeqModel
from ..spec import SEQ2SEQ_DROPOUT, Spec
from .bart import HEAD_RENAMES, seq2seq_renames

SPEC = Spec(
    model_type="m2m_100",
    family="encoder-decoder",
    base_prefix="model",
    class_prefix="M2M100",
    tasks=("base", "seq2seq_lm"),
    model_class=Seq2SeqModel,
    position="sinusoidal_fairseq",
    positions_from_padding=True,
    dropout=SEQ2SEQ_DROPOUT,
    padding_rows=("word",),
    pre_norm=True,
    final_norm=True,
    renames=seq2seq_renames(positions=None),
    head_renames=HEAD_RENAMES,
)
