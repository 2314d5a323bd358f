"""Encoder-decoder models (BART, mBART, Marian, Pegasus, M2M100, T5, mT5): an encoder Transformer and a causal decoder
Transformer with cross-attention, both assembled from the architecture's Spec, sharing the word embeddings.

The call protocol is transformers': `model.get_encoder()(input_ids, attention_mask)` once, then
`model(encoder_outputs=..., attention_mask=..., decoder_input_ids=..., past_key_values=..., use_cache=True)` per step;
cross-attention keys/values are computed on the first step and kept in the cache (`cache.cross[i]`).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import Config
from .heads import LMHead, compute_loss
from .layers import Embeddings, sinusoidal_table
from .model import PreTrainedModel
from .outputs import ModelOutput
from .seq2seq_halves import TASK_MIXINS
from .transformer import Transformer

# transformers' names of the base model's outputs, in its order (so that `out[i]` matches)
_OUTPUT_ORDER = ("past_key_values", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
                 "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")
# inputs transformers accepts for features these models do not have (only None is accepted here)
_UNSUPPORTED = ("head_mask", "decoder_head_mask", "cross_attn_head_mask")


def shift_right(ids: torch.Tensor, pad_token_id, start_token_id) -> torch.Tensor:
    """(B, T) labels -> decoder inputs: `start_token_id`, then the labels but their last; -100 (ignored) -> pad."""
    if start_token_id is None:
        raise ValueError("config.decoder_start_token_id is not set: it is needed to make decoder_input_ids from "
                         "labels (T5 and Pegasus use the pad token, BART the </s> token)")
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is not set: it is needed to make decoder_input_ids from labels")
    shifted = ids.new_full(ids.shape, start_token_id)
    shifted[:, 1:] = ids[:, :-1]
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def shift_right_wrapping_last(ids: torch.Tensor, pad_token_id) -> torch.Tensor:
    """mBART: the last non-pad token of each row (its language code) moves to the front; the rest shift right."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is not set: it is needed to make decoder_input_ids from labels")
    ids = ids.masked_fill(ids == -100, pad_token_id)
    last = ids.ne(pad_token_id).sum(dim=1, keepdim=True) - 1  # (B, 1)
    shifted = ids.roll(1, dims=1)
    shifted[:, :1] = ids.gather(1, last)
    return shifted


def side_config(config: Config, side: str, **canonical) -> Config:
    """The config one half of the stack reads: the whole config, with the sizes under the names the shared blocks
    know (hidden_size, num_hidden_layers, ...). No model_type, so no per-family alias redirects them."""
    missing = [name for name, value in canonical.items() if value is None]
    if missing:
        raise ValueError(f"the {config.get('model_type')} config gives no {', '.join(missing)} for the {side} "
                         "(config.json lacks the key, e.g. encoder_layers / decoder_ffn_dim / num_layers)")
    return Config(**{**config.to_dict(), "model_type": None, **canonical})


class EncoderDecoder(nn.Module):
    """The base stack: encoder + causal decoder with cross-attention. `shared`: the decoder reads the encoder's word
    embeddings (the same module, so loading either name fills both)."""

    def __init__(self, encoder_side, decoder_side, shared: bool):
        super().__init__()
        self.encoder = Transformer(*encoder_side)
        embeddings = Embeddings(*decoder_side)
        if shared:
            embeddings.word = self.encoder.embeddings.word
        self.decoder = self.build_decoder(decoder_side, embeddings)

    def build_decoder(self, decoder_side, embeddings) -> nn.Module:
        """The causal decoder stack with cross-attention (ProphetNet builds its n-gram decoder here)."""
        return Transformer(*decoder_side, causal=True, cross=True, embeddings=embeddings)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=False, output_attentions=False, output_hidden_states=False):
        shown = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                           inputs_embeds=inputs_embeds, use_cache=False, **shown)
        elif not isinstance(encoder_outputs, ModelOutput):  # a tuple (last_hidden_state, ...), as transformers takes
            encoder_outputs = ModelOutput(last_hidden_state=encoder_outputs[0])
        decoder = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                               inputs_embeds=decoder_inputs_embeds, past_key_values=past_key_values,
                               encoder_hidden_states=encoder_outputs.last_hidden_state,
                               encoder_attention_mask=attention_mask, use_cache=use_cache, **shown)
        return self.outputs(decoder, encoder_outputs)

    @staticmethod
    def outputs(decoder, encoder_outputs) -> ModelOutput:
        """The base model's output: transformers' fields in its order (a decoder with more outputs adds them)."""
        return ModelOutput(
            last_hidden_state=decoder.last_hidden_state,
            past_key_values=decoder.past_key_values,
            decoder_hidden_states=decoder.hidden_states,
            decoder_attentions=decoder.attentions,
            cross_attentions=decoder.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class Seq2SeqModel(PreTrainedModel):
    """The PreTrainedModel of encoder-decoder specs (`spec.model_class`); an architecture subclasses it to change
    the class attributes below or how a config's sizes are read (`side`)."""

    final_logits_bias = False               # a fixed per-token bias added to the logits (BART, Marian, Pegasus)
    decoder_inputs_from_input_ids = False   # BART/mBART: without decoder inputs, the shifted input_ids are used
                                            # (always so for the classification and question-answering heads)
    wrap_last_token = False                 # mBART: shifting moves the language code to the front (no start token)
    grouped_cross_attention = True          # generate() need not repeat the encoder output per beam: the decoder's
                                            # cross-attention (attention.Attention) takes B encoder rows for B*k
                                            # decoder rows (ProphetNet's n-gram decoder too: same cross-attention)
    task_mixins = TASK_MIXINS               # T5EncoderModel, BartForCausalLM, ...: one half alone
    output_order = _OUTPUT_ORDER            # the base model's outputs a head model returns after its own

    def __init__(self, config: Config):
        super().__init__(config)
        self.config.is_encoder_decoder = True  # transformers' config classes for these families default to True

    # ---- construction
    def side(self, config: Config, side: str) -> tuple:
        """(spec, config) of the encoder or the decoder: BART-style configs name each half's sizes."""
        spec = dataclasses.replace(self.spec, embedding_scale=bool(config.get("scale_embedding", False)))
        return spec, side_config(
            config, side, hidden_size=config.get("d_model"), num_hidden_layers=config.get(f"{side}_layers"),
            num_attention_heads=config.get(f"{side}_attention_heads"),
            intermediate_size=config.get(f"{side}_ffn_dim"), hidden_act=config.get("activation_function", "gelu"),
            layer_norm_eps=1e-5)

    @staticmethod
    def shares_embeddings(config) -> bool:
        return bool(config.get("share_encoder_decoder_embeddings", True))

    def output_vocab_size(self, config) -> int:
        """Marian may give the decoder its own output vocabulary (share_encoder_decoder_embeddings=False); its input
        embeddings keep vocab_size rows, as transformers copies them from the shared table."""
        size = config.vocab_size
        if not self.shares_embeddings(config):
            size = config.get("decoder_vocab_size", size)
        if size != config.vocab_size and config.get("tie_word_embeddings", self.spec.tied_embeddings):
            raise ValueError(f"config.decoder_vocab_size={size} differs from vocab_size={config.vocab_size}, but the "
                             "output projection is tied to the decoder's input embeddings (tie_word_embeddings=True)")
        return size

    def build_base(self, config) -> nn.Module:
        shared = self.shares_embeddings(config)
        return EncoderDecoder(self.side(config, "encoder"), self.side(config, "decoder"), shared)

    def build_head(self, config) -> nn.Module | None:
        if self.task == "seq2seq_lm":
            _, decoder_config = self.side(config, "decoder")
            decoder_config.vocab_size = self.output_vocab_size(config)
            return LMHead(decoder_config, logits_bias=self.final_logits_bias)
        return super().build_head(config)

    def output_scale(self) -> float:
        """What the decoder output is multiplied by before the vocabulary projection (T5 overrides)."""
        return 1.0

    # ---- weights that share storage
    def tied_weights(self) -> dict[str, str]:
        if self.task == "seq2seq_lm" and self.config.get("tie_word_embeddings", self.spec.tied_embeddings):
            return {"head.decoder.weight": "model.decoder.embeddings.word.weight"}
        return {}

    def input_embeddings_name(self) -> str:
        return "model.encoder.embeddings.word.weight"

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    # ---- forward
    def shift_right(self, ids: torch.Tensor) -> torch.Tensor:
        if self.wrap_last_token:
            return shift_right_wrapping_last(ids, self.config.pad_token_id)
        return shift_right(ids, self.config.pad_token_id, self.config.get("decoder_start_token_id"))

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=True,
                start_positions=None, end_positions=None, cache_position=None, **unsupported):
        self._check_unsupported(unsupported)
        if labels is not None or start_positions is not None:
            use_cache = False  # training-style call: transformers returns no cache
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._default_decoder_inputs(input_ids, labels)
        outputs = self.model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=self.config.get("use_cache", True) if use_cache is None else use_cache,
            output_attentions=self.config.get("output_attentions", False) if output_attentions is None
            else output_attentions,
            output_hidden_states=self.config.get("output_hidden_states", False) if output_hidden_states is None
            else output_hidden_states)
        if self.head is None:
            return outputs if return_dict else outputs.to_tuple()
        result = self._head(outputs, input_ids, attention_mask)
        loss = None
        if labels is not None:
            loss = compute_loss(self.task, self.config, result, labels)
        elif self.task == "question_answering" and start_positions is not None:
            loss = compute_loss(self.task, self.config, result, (start_positions, end_positions))
        out = ModelOutput(loss=loss, **result, **{k: outputs.get(k) for k in self.output_order})
        return out if return_dict else out.to_tuple()

    def _head(self, outputs, input_ids, attention_mask) -> dict:
        scale = self.output_scale()
        if self.task == "seq2seq_lm" and scale != 1.0:
            outputs = ModelOutput(last_hidden_state=outputs.last_hidden_state * scale)
        if self.task == "sequence_classification" and input_ids is None:
            raise ValueError(f"{type(self).__name__} pools the last </s> of input_ids: pass input_ids")
        return self.head(outputs, input_ids=input_ids, attention_mask=attention_mask)

    def _default_decoder_inputs(self, input_ids, labels):
        if labels is not None and self.task == "seq2seq_lm":
            return self.shift_right(labels)
        reads_input_ids = self.task in ("sequence_classification", "question_answering")
        if (self.decoder_inputs_from_input_ids or reads_input_ids) and input_ids is not None:
            return self.shift_right(input_ids)
        raise ValueError(f"{type(self).__name__} needs decoder_input_ids (or decoder_inputs_embeds"
                         f"{', or labels' if self.task == 'seq2seq_lm' else ''}) besides the encoder's input_ids")

    def _check_unsupported(self, unsupported: dict):
        for name, value in unsupported.items():
            if name not in _UNSUPPORTED:
                raise TypeError(f"{type(self).__name__}.forward() got an unexpected argument {name!r}")
            if value is not None:
                raise NotImplementedError(f"{name} is not supported (transformers deprecated head masks)")


def drop_stored_sinusoids(state_dict: dict, config) -> dict:
    """Marian and Pegasus checkpoints store their fixed sin/cos position tables (embed_positions.weight, never
    trained: requires_grad=False in transformers); the model computes the same table, so those copies are skipped."""
    return {k: v for k, v in state_dict.items() if not k.endswith(".embeddings.sinusoid.weight")}


def store_sinusoids(state_dict: dict, config, task: str) -> dict:
    """Saving (the inverse of drop_stored_sinusoids): transformers stores the tables, but for MarianMTModel."""
    if config.model_type == "marian" and task == "seq2seq_lm":  # its _keys_to_ignore_on_save
        return state_dict
    dtype = next(iter(state_dict.values())).dtype
    table = sinusoidal_table(config.max_position_embeddings, config.d_model).to(dtype)
    return {**state_dict, **{f"model.{side}.embeddings.sinusoid.weight": table for side in ("encoder", "decoder")}}


def unshared_embedding_names(config) -> dict:
    """Saving: with share_encoder_decoder_embeddings=False (Marian), the encoder's table is encoder.embed_tokens,
    there being no `shared` one."""
    if config.get("share_encoder_decoder_embeddings", True):
        return {}
    return {"encoder.embed_tokens": "encoder.embeddings.word"}
