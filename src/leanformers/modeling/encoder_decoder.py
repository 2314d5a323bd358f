"""EncoderDecoderModel: an encoder checkpoint (BERT, RoBERTa, ...) paired with a decoder checkpoint whose blocks gain
cross-attention to the encoder's output: GPT-2, or an encoder architecture run causally (BERT, RoBERTa), as
transformers' EncoderDecoderModel pairs them. Each half is this library's own model of its architecture, built from
its sub-config (`config.encoder`, `config.decoder`); the decoder's says is_decoder + add_cross_attention.

When the two hidden sizes differ, `enc_to_dec_proj` maps the encoder's states to the decoder's size. The call
protocol is the seq2seq one: `get_encoder()` once, then `model(encoder_outputs=..., decoder_input_ids=...,
past_key_values=..., use_cache=True)`; the decoder's cache keeps the cross-attention keys/values computed once.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from .auto import spec_for
from .heads import compute_loss
from .model import PreTrainedModel, model_class
from .outputs import ModelOutput
from .seq2seq import shift_right

SIDES = ("encoder", "decoder")


def decoder_task(spec) -> str:
    """The LM head of this architecture as a decoder: its causal LM (GPT-2), else its masked-LM head run causally
    (BertLMHeadModel and RobertaForCausalLM keep the masked-LM head's layout and names). Only architectures whose
    checkpoints name a cross-attention (transformers' decoders that take encoder_hidden_states) qualify."""
    task = next((task for task in ("causal_lm", "masked_lm") if task in spec.tasks), None)
    if task is None or not any(".cross_attention" in ours for ours in spec.renames.values()):
        raise ValueError(f"a {spec.model_type} model cannot be the decoder of an EncoderDecoderModel: it has no "
                         "cross-attention to the encoder's output (use e.g. a BERT, RoBERTa or GPT-2 decoder)")
    return task


def side_config(config: Config, side: str) -> Config:
    """`config.encoder` or `config.decoder` (a dict in config.json) as a Config."""
    sub = config.get(side)
    if sub is None:
        raise ValueError(f"an encoder-decoder config.json needs an {side!r} sub-config (the {side} model's config)")
    return sub if isinstance(sub, Config) else Config.from_dict(sub.to_dict() if hasattr(sub, "to_dict") else sub)


def side_class(config: Config, side: str) -> type:
    """The model class of one half: the encoder's base model, the decoder's LM."""
    model_type = config.get("model_type")
    if model_type is None:
        raise ValueError(f"the {side} sub-config has no 'model_type'; cannot tell which architecture to build")
    spec = spec_for(model_type)
    return model_class(spec, "base" if side == "encoder" else decoder_task(spec))


def halves_to_ours(state_dict: dict, config) -> dict:
    """The spec's `convert` hook: checkpoint keys `encoder.*` / `decoder.*` (already under 'model.') go through
    their own architecture's renames, conversion and transposes. Keys a half does not know stay as they are, so that
    loading reports them as unexpected."""
    from ..loading import convert_checkpoint  # loading sits above modeling in the import order

    return _per_half(state_dict, config, lambda cls, half, sub: convert_checkpoint(cls.spec, half, sub, cls.task))


def halves_to_checkpoint(state_dict: dict, config, task: str) -> dict:
    """The spec's `unconvert` hook (saving): each half's keys go through its own architecture's inverse, so that
    `model.encoder.<its checkpoint name>` is left for the pair's renames to prefix."""
    from ..saving import to_checkpoint  # saving sits above modeling in the import order

    return _per_half(state_dict, config, lambda cls, half, sub: to_checkpoint(cls.spec, half, sub, cls.task))


def _per_half(state_dict: dict, config, convert) -> dict:
    """Keys under model.encoder. / model.decoder. through convert(half's class, half's keys, half's config) ->
    (converted keys, keys it left); the keys left keep their names (loading / saving reports them)."""
    out = {k: v for k, v in state_dict.items() if not k.startswith(tuple(f"model.{side}." for side in SIDES))}
    for side in SIDES:
        prefix = f"model.{side}."
        half = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        sub_config = side_config(config, side)
        converted, left = convert(side_class(sub_config, side), half, sub_config)
        out.update({prefix + k: v for k, v in converted.items()})
        out.update({prefix + k: half[k] for k in left if k in half})
    return out


class Pair(nn.Module):
    """The base stack: the two models and the projection between them (names as transformers': encoder, decoder,
    enc_to_dec_proj)."""

    def __init__(self, encoder: PreTrainedModel, decoder: PreTrainedModel):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        encoder_size, decoder_size = encoder.config.hidden_size, decoder.config.hidden_size
        # transformers projects only when the decoder does not read encoder-sized states itself
        project = encoder_size != decoder_size and decoder.config.get("cross_attention_hidden_size") is None
        self.enc_to_dec_proj = nn.Linear(encoder_size, decoder_size) if project else None


class EncoderDecoderFamily(PreTrainedModel):
    """The PreTrainedModel of model_type "encoder-decoder" (users import it as EncoderDecoderModel)."""

    # generate() need not repeat the encoder output per beam: every decoder half this pairs is a Transformer stack
    # whose cross-attention (attention.Attention) takes B encoder rows for B*k decoder rows
    grouped_cross_attention = True

    def __init__(self, config: Config):
        super().__init__(config)
        self.config.is_encoder_decoder = True

    def build_base(self, config) -> nn.Module:
        halves = {side: side_config(config, side) for side in SIDES}
        if halves["decoder"].get("cross_attention_hidden_size") not in (None, halves["encoder"].hidden_size):
            raise ValueError("config.decoder.cross_attention_hidden_size must equal the encoder's hidden_size")
        return Pair(*(side_class(halves[side], side)(halves[side]) for side in SIDES))

    def build_head(self, config):
        return None  # the decoder model carries the LM head

    # ---- weights that share storage
    def tied_weights(self) -> dict[str, str]:
        ties = {}
        for side in SIDES:
            half = getattr(self.model, side)
            ties.update({f"model.{side}.{k}": f"model.{side}.{v}" for k, v in half.tied_weights().items()})
        return ties

    def input_embeddings_name(self) -> str:
        return "model.encoder." + self.model.encoder.input_embeddings_name()

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def can_generate(self) -> bool:
        return True

    # ---- forward
    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=True,
                **kwargs):
        """kwargs named decoder_* go to the decoder (prefix dropped), the others to the encoder, as transformers."""
        to_decoder = {k[len("decoder_"):]: v for k, v in kwargs.items() if k.startswith("decoder_")}
        to_encoder = {k: v for k, v in kwargs.items() if not k.startswith("decoder_")}
        shown = dict(output_attentions=output_attentions or self.config.get("output_attentions", False),
                     output_hidden_states=output_hidden_states or self.config.get("output_hidden_states", False))
        if encoder_outputs is None:
            encoder_outputs = self.model.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                                 inputs_embeds=inputs_embeds, **shown, **to_encoder)
        elif not isinstance(encoder_outputs, ModelOutput):  # a tuple (last_hidden_state, ...), as transformers takes
            encoder_outputs = ModelOutput(last_hidden_state=encoder_outputs[0])
        states = encoder_outputs.last_hidden_state  # (B, S, encoder hidden)
        if self.model.enc_to_dec_proj is not None:
            states = self.model.enc_to_dec_proj(states)  # (B, S, decoder hidden)
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = shift_right(labels, self.config.get("pad_token_id"),
                                            self.config.get("decoder_start_token_id"))
            if decoder_attention_mask is None:
                decoder_attention_mask = decoder_input_ids.ne(self.config.pad_token_id)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("EncoderDecoderModel needs decoder_input_ids (or decoder_inputs_embeds, or labels) "
                             "besides the encoder's input_ids")
        decoder = self.model.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask, encoder_hidden_states=states,
            encoder_attention_mask=attention_mask, inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
            past_key_values=past_key_values, **shown, **to_decoder)
        loss = compute_loss("seq2seq_lm", self.config, decoder, labels) if labels is not None else None
        out = ModelOutput(
            loss=loss, logits=decoder.logits, past_key_values=decoder.past_key_values,
            decoder_hidden_states=decoder.hidden_states, decoder_attentions=decoder.attentions,
            cross_attentions=decoder.cross_attentions, encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states, encoder_attentions=encoder_outputs.attentions)
        return out if return_dict else out.to_tuple()

    # ---- building a pair from two checkpoints
    @classmethod
    def from_encoder_decoder_pretrained(cls, encoder_pretrained_model_name_or_path=None,
                                        decoder_pretrained_model_name_or_path=None, **kwargs):
        """The encoder from one checkpoint (its base model), the decoder from another (its LM, run causally with
        cross-attention added: those weights are new, drawn at random, with a warning). Keyword arguments
        `encoder_*` / `decoder_*` go to that half's from_pretrained (`encoder_model=` / `decoder_model=` pass a
        loaded model); the others set the pair's config (decoder_start_token_id, pad_token_id, ...)."""
        paths = dict(zip(SIDES, (encoder_pretrained_model_name_or_path, decoder_pretrained_model_name_or_path)))
        models = {}
        for side in SIDES:
            options = {k[len(side) + 1:]: kwargs.pop(k) for k in list(kwargs) if k.startswith(side + "_")}
            models[side] = options.pop("model", None) or cls._load_side(side, paths[side], options)
        config = Config(model_type="encoder-decoder", is_encoder_decoder=True,
                        **{side: models[side].config.to_dict() for side in SIDES}, **kwargs)
        with torch.device("meta"):  # the halves are replaced by the loaded ones; only the projection is new
            model = cls(config)
        model.model.encoder, model.model.decoder = models["encoder"], models["decoder"]
        from ..loading import initialise

        initialise(model)
        model.tie_weights()
        model.loading_info = {key: [f"model.{side}.{name}" for side in SIDES
                                    for name in getattr(models[side], "loading_info", {}).get(key, [])]
                              for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        # fixed now, as transformers does: decoder_start_token_id set on model.config later does not reach
        # generate(); set it on model.generation_config or pass it to generate()
        model.load_generation_config(None)
        return model.eval()

    @staticmethod
    def _load_side(side: str, name_or_path, options: dict) -> PreTrainedModel:
        if name_or_path is None:
            raise ValueError(f"pass {side}_pretrained_model_name_or_path (or {side}_model=)")
        config = options.pop("config", None) or Config.from_pretrained(name_or_path)
        as_decoder = side == "decoder"  # the encoder runs bidirectionally, the decoder causally with cross-attention
        config = Config.from_dict(config.to_dict(), is_decoder=as_decoder, add_cross_attention=as_decoder)
        return side_class(config, side).from_pretrained(name_or_path, config=config, **options)
