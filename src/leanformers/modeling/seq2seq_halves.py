"""One half of an encoder-decoder architecture as a model of its own, as transformers has them:

  task "encoder"    T5EncoderModel, MT5EncoderModel: the encoder stack alone (BaseModelOutput)
  task "causal_lm"  BartForCausalLM, MBartForCausalLM, MarianForCausalLM, PegasusForCausalLM: the decoder stack
                    alone with the LM head, a decoder-only model (is_encoder_decoder=False); its cross-attention runs
                    only when the caller passes encoder_hidden_states
Checkpoint names are the full model's (encoder.* / decoder.*, lm_head), so the architecture's renames load them.
These are mixins: `model_class` puts one before the architecture's Seq2SeqModel subclass, whose `side()` still
reads the half's sizes.
"""
from __future__ import annotations

from torch import nn

from .heads import LMHead, compute_loss
from .layers import Embeddings
from .outputs import ModelOutput
from .transformer import Transformer


def _flag(value, config, name) -> bool:
    return bool(config.get(name, False)) if value is None else bool(value)


class EncoderOnly:
    """T5EncoderModel: `model.encoder` holds what the full model's encoder holds."""

    def build_base(self, config) -> nn.Module:
        base = nn.Module()
        base.encoder = Transformer(*self.side(config, "encoder"))
        return base

    def build_head(self, config):
        return None

    def tied_weights(self) -> dict[str, str]:
        return {}

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=True):
        """transformers' T5EncoderModel.forward: (last_hidden_state, hidden_states, attentions)."""
        if head_mask is not None:
            raise NotImplementedError("head_mask is not supported (transformers deprecated head masks)")
        out = self.model.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=_flag(output_hidden_states, self.config, "output_hidden_states"))
        out = ModelOutput(last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                          attentions=out.attentions)
        return out if return_dict else out.to_tuple()


class DecoderOnly:
    """*ForCausalLM of an encoder-decoder family: `model.decoder` (no shared table, no encoder) and `head.decoder`."""

    def __init__(self, config):
        super().__init__(config)
        self.config.is_encoder_decoder, self.config.is_decoder = False, True  # as transformers' __init__ sets them

    def build_base(self, config) -> nn.Module:
        spec, decoder_config = self.side(config, "decoder")
        base = nn.Module()
        base.decoder = Transformer(spec, decoder_config, causal=True, cross=True,
                                   embeddings=Embeddings(spec, decoder_config))
        return base

    def build_head(self, config):
        return LMHead(self.side(config, "decoder")[1])

    def tied_weights(self) -> dict[str, str]:
        if self.config.get("tie_word_embeddings", self.spec.tied_embeddings):
            return {"head.decoder.weight": "model.decoder.embeddings.word.weight"}
        return {}

    def input_embeddings_name(self) -> str:
        return "model.decoder.embeddings.word.weight"

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                head_mask=None, cross_attn_head_mask=None, past_key_values=None, inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=True,
                cache_position=None, logits_to_keep=0):
        """transformers' BartForCausalLM.forward: (loss, logits, past_key_values, hidden_states, attentions,
        cross_attentions); no position_ids, as there (positions count from the cache length)."""
        if head_mask is not None or cross_attn_head_mask is not None:
            raise NotImplementedError("head_mask is not supported (transformers deprecated head masks)")
        out = self.model.decoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            past_key_values=past_key_values, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            use_cache=self.config.get("use_cache", True) if use_cache is None else use_cache,
            output_attentions=_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=_flag(output_hidden_states, self.config, "output_hidden_states"))
        hidden = out.last_hidden_state
        if logits_to_keep:  # generation reads only the last positions' logits
            hidden = hidden[:, -logits_to_keep:]
        logits = self.head(ModelOutput(last_hidden_state=hidden))["logits"]
        # transformers' *ForCausalLM of these families compare logits and labels position by position (no shift):
        # the labels are expected already shifted, as for the seq2seq head
        loss = compute_loss("seq2seq_lm", self.config, {"logits": logits}, labels) if labels is not None else None
        result = ModelOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                             hidden_states=out.hidden_states, attentions=out.attentions,
                             cross_attentions=out.cross_attentions)
        return result if return_dict else result.to_tuple()


TASK_MIXINS = {"encoder": EncoderOnly, "causal_lm": DecoderOnly}
