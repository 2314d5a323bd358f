"""model_type "encoder-decoder": transformers' EncoderDecoderModel pairs (modeling/encoder_decoder.py). Its own names
are only the two halves and the projection between them; each half's keys go through that half's own spec."""
from ..encoder_decoder import EncoderDecoderFamily, halves_to_checkpoint, halves_to_ours
from ..spec import Spec

SPEC = Spec(
    model_type="encoder-decoder",
    family="encoder-decoder",
    base_prefix="",
    class_names={"seq2seq_lm": "EncoderDecoderModel"},
    tasks=("seq2seq_lm",),
    model_class=EncoderDecoderFamily,
    position=None,
    renames={"encoder": "encoder", "decoder": "decoder", "enc_to_dec_proj": "enc_to_dec_proj"},
    convert=halves_to_ours,
    unconvert=halves_to_checkpoint,
)
