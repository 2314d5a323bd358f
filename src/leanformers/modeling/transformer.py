"""Stacks assembled from a Spec: a Block (attention, optional cross-attention, MLP, norms) and a Transformer
(embeddings, blocks, final norm, pooler) that serves as encoder, decoder, or either half of an encoder-decoder."""
from __future__ import annotations

from functools import partial

import torch
import torch.utils.checkpoint
from torch import nn

from .attention import Attention, attention_bias
from .cache import KVCache
from .layers import MLP, Embeddings, dropout, norm, norm_kind
from .outputs import ModelOutput
from .position_bias import RelativePositionBias
from .rope import Rotary
from .spec import dropout_rate


def flag(value, config) -> bool:
    """A spec flag that is either fixed (a bool), read from the config (a key name, e.g. Llama's attention_bias) or
    computed from it (a function of the config, e.g. OPT's final norm)."""
    if isinstance(value, str):
        return bool(config.get(value, False))
    return bool(value(config)) if callable(value) else value


def attention_scale(spec, config, depth: int) -> float | None:
    """None = the usual 1/sqrt(head_dim). GPT-2's config may drop that (scale_attn_weights=False) or further divide
    by the layer's depth + 1 (scale_attn_by_inverse_layer_idx), as its eager attention does."""
    if isinstance(spec.attention_scale, str):  # Gemma 2: query_pre_attn_scalar ** -0.5
        return config.get(spec.attention_scale) ** -0.5
    scaled = spec.attention_scale and config.get("scale_attn_weights", True)
    if not config.get("scale_attn_by_inverse_layer_idx", False):
        return None if scaled else 1.0
    head_dim = config.get("head_dim") or config.hidden_size // config.num_attention_heads
    return (head_dim ** -0.5 if scaled else 1.0) / (depth + 1)


def attention_for(spec, config, kv_hidden=None, depth: int = 0) -> Attention:
    if spec.attention_class is not None and kv_hidden is None:
        return spec.attention_class(config)
    hidden = config.hidden_size
    return Attention(
        hidden, config.num_attention_heads, num_kv_heads=config.get("num_key_value_heads"),
        head_dim=config.get("head_dim"), bias=flag(spec.qkv_bias, config), out_bias=flag(spec.out_bias, config),
        fused_qkv=spec.fused_qkv and kv_hidden is None, scale=attention_scale(spec, config, depth),
        kv_hidden=kv_hidden, softcap=config.get(spec.attention_softcap) if spec.attention_softcap else None,
        qk_norm_eps=config.layer_norm_eps if spec.qk_norm and kv_hidden is None else None,
        dropout=dropout_rate(spec, config, "attention"),
    )


def shared_schedule(config) -> list[tuple[int, ...]]:
    """ALBERT: depth i runs group int(i / (layers / groups)), a group being inner_group_num consecutive blocks."""
    layers, groups, inner = config.num_hidden_layers, config.num_hidden_groups, config.get("inner_group_num", 1)
    return [tuple(int(i / (layers / groups)) * inner + j for j in range(inner)) for i in range(layers)]


def residual(x, out):
    """x + out, written into `out` (a sublayer's fresh output) at inference: the same sum, one tensor fewer to
    allocate (and page-fault in) per residual."""
    return x + out if torch.is_grad_enabled() or out.shape != x.shape else out.add_(x)


class Block(nn.Module):
    def __init__(self, spec, config, cross: bool = False, depth: int = 0):
        super().__init__()
        self.fused_decode = None  # (block, x, bias, cache, layer_idx, rotary) -> x or None: block models' one op
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.pre_norm = flag(spec.pre_norm, config)
        self.parallel = flag(spec.parallel_residual, config)
        self.attention = attention_for(spec, config, depth=depth)
        kind = norm_kind(spec, config)
        # ModernBERT: the first layer's input is the embeddings' norm already; its attention has no norm of its own
        self.attention_norm = nn.Identity() if spec.first_attention_norm is False and depth == 0 else \
            norm(kind, hidden, eps)
        self.cross_attention = attention_for(spec, config, kv_hidden=hidden, depth=depth) if cross else None
        self.cross_attention_norm = norm(kind, hidden, eps) if cross else None
        inner = config.get("intermediate_size") or 4 * hidden
        act = spec.mlp_act or spec.act_names.get(config.hidden_act, config.hidden_act)
        self.mlp = MLP(hidden, inner, act, gated=spec.gated_mlp, bias=flag(spec.mlp_bias, config),
                       dropout=dropout_rate(spec, config, "activation"))
        self.mlp_norm = norm(kind, hidden, eps)
        self.dropout = dropout_rate(spec, config, "hidden")  # on each sublayer's output, before the residual add
        # Gemma 2: the sublayers' outputs are normed too, before they join the residual
        self.attention_post_norm = norm(kind, hidden, eps) if spec.sandwich_norm else None
        self.mlp_post_norm = norm(kind, hidden, eps) if spec.sandwich_norm else None

    def forward(self, x, bias=None, *, cache=None, layer_idx=0, rotary=None, is_causal=False,
                encoder_states=None, cross_bias=None, output_attentions=False, first_only=False, relative=None,
                packed=None):
        """x (B, T, hidden) -> (B, T, hidden), self-attention probs, cross-attention probs.

        first_only: only position 0 goes on (a classifier reads nothing else): it still attends to every position,
        but its attention output, residuals, norms and MLP run on that one row, and the result is (B, 1, hidden)."""
        if (self.fused_decode is not None and x.shape[1] == 1 and cache is not None and rotary is not None
                and not (output_attentions or first_only or torch.is_grad_enabled()) and packed is None
                and relative is None and encoder_states is None):
            out = self.fused_decode(self, x, bias, cache, layer_idx, rotary)
            if out is not None:
                return out, None, None
        attend = dict(cache=cache, layer_idx=layer_idx, output_attentions=output_attentions)
        if relative is not None:  # DeBERTa: the relative-position table and distances, computed once per stack
            attend["relative"] = relative
        if packed is not None:  # x is (N, hidden): the real tokens only (Transformer.pack)
            attend["packed"] = packed
        queries = None  # x[:, :None] is all of x
        if first_only:
            queries = 1
            bias, cross_bias = (b[:, :, :1] if b is not None else None for b in (bias, cross_bias))  # the query rows
        cross_probs = None
        if self.pre_norm:
            out, probs = self.attention(self.attention_norm(x), bias, rotary=rotary, is_causal=is_causal,
                                        queries=queries, **attend)
            if self.attention_post_norm is not None:
                out = self.attention_post_norm(out)
            if self.parallel:  # GPT-NeoX: both sublayers read the same input, x + (attn + mlp)
                return residual(x[:, :queries], self.drop(out) + self.drop(self.mlp(self.mlp_norm(x[:, :queries])))), \
                    probs, None
            x = residual(x[:, :queries], self.drop(out))
            if self.cross_attention is not None and encoder_states is not None:
                out, cross_probs = self.cross_attention(self.cross_attention_norm(x), cross_bias,
                                                        kv_states=encoder_states, **attend)
                x = residual(x, self.drop(out))
            out = self.mlp(self.mlp_norm(x))
            if self.mlp_post_norm is not None:
                out = self.mlp_post_norm(out)
            return residual(x, self.drop(out)), probs, cross_probs
        out, probs = self.attention(x, bias, rotary=rotary, is_causal=is_causal, queries=queries, **attend)
        x = self.attention_norm(residual(x[:, :queries], self.drop(out)))
        if self.cross_attention is not None and encoder_states is not None:
            out, cross_probs = self.cross_attention(x, cross_bias, kv_states=encoder_states, **attend)
            x = self.cross_attention_norm(residual(x, self.drop(out)))
        return self.mlp_norm(residual(x, self.drop(self.mlp(x)))), probs, cross_probs

    def drop(self, out):
        return dropout(out, self.dropout, self.training)


class Transformer(nn.Module):
    """Embeddings -> blocks -> final norm (-> pooler). `causal` makes it a decoder; `cross` adds cross-attention."""

    def __init__(self, spec, config, *, causal: bool = False, cross: bool = False, embeddings: nn.Module | None = None,
                 pooler: bool = False):
        super().__init__()
        self.spec, self.config, self.causal = spec, config, causal
        self.embeddings = embeddings if embeddings is not None else (spec.embeddings_class or Embeddings)(spec, config)
        # which blocks run at each depth: one block each, or ALBERT's shared groups
        n = config.num_hidden_layers
        self.schedule = shared_schedule(config) if spec.shared_layers else [(i,) for i in range(n)]
        blocks = 1 + max(i for group in self.schedule for i in group)
        self.layers = nn.ModuleList(Block(spec, config, cross, depth=i) for i in range(blocks))
        self.windows = spec.layer_windows(config) if spec.layer_windows else [None] * n  # sliding window per depth
        self.final_norm = norm(norm_kind(spec, config), config.hidden_size, config.layer_norm_eps) \
            if flag(spec.final_norm, config) else None
        self.final_dropout = dropout_rate(spec, config, "final")  # T5: after the final norm
        self.rotary = None
        if spec.position == "rotary":
            self.rotary = Rotary.from_config(config)
        # ModernBERT: a rotary table per base, each layer reading its own (global vs local layers)
        self.layer_thetas = spec.layer_rope_theta(config) if spec.layer_rope_theta else None
        self.layer_rotary = {theta: Rotary.from_config(config, base=theta) for theta in set(self.layer_thetas)} \
            if self.layer_thetas else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if pooler else None
        context = getattr(spec.attention_class, "context", None)
        self.attention_context = context(config) if context and config.get("relative_attention", False) else None
        # T5: one relative position bias for the whole stack (its checkpoint keeps it in the first layer)
        relative = spec.position == "relative" or spec.relative_bias
        self.relative_bias = RelativePositionBias(config, not causal) if relative else None
        self.gradient_checkpointing = None  # torch.utils.checkpoint's options while enabled (train() mode only)

    def packable(self, attention_mask) -> bool:
        """Training on a padded batch of a plain bidirectional encoder (no rotary or relative positions, no
        cross-attention): its per-token layers may skip the padding. Worth it from 1/16 of the positions padded."""
        if (attention_mask is None or attention_mask.dim() != 2 or self.causal or self.rotary is not None
                or self.layer_rotary or self.relative_bias is not None or self.attention_context is not None
                or any(layer.cross_attention is not None or not layer.attention.packable() for layer in self.layers)):
            return False
        return (attention_mask == 0).sum().item() * 16 >= attention_mask.numel()

    @staticmethod
    def pack(x, attention_mask):
        """(B, T, hidden) -> (N, hidden), the rows where attention_mask is 1, and `packed` = (index, B, T): the
        layers then compute on real tokens only. The gradients of the real tokens are those of the padded batch:
        the attention masks padded keys, and no loss reads a padded position."""
        batch, length, hidden = x.shape
        index = attention_mask.reshape(-1).nonzero().squeeze(1)
        return x.reshape(batch * length, hidden).index_select(0, index), (index, batch, length)

    @staticmethod
    def unpack(x, packed):
        """(N, hidden) -> (B, T, hidden), zeros at the padding."""
        index, batch, length = packed
        return x.new_zeros(batch * length, x.shape[-1]).index_copy(0, index, x).view(batch, length, -1)

    def position_ids(self, input_ids, inputs_embeds, past_length, attention_mask=None):
        batch, length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if self.spec.positions_from_mask and attention_mask is not None:  # OPT: padding gets position -1
            positions = (attention_mask.long().cumsum(1) * attention_mask.long() - 1)
            return positions[:, past_length:past_length + length]
        if self.spec.positions_from_padding:
            pad = self.config.pad_token_id
            if input_ids is not None:  # RoBERTa: count real tokens, padding keeps position `pad`
                mask = input_ids.ne(pad).long()
                return (torch.cumsum(mask, dim=1) + past_length) * mask + pad
            return torch.arange(pad + 1, pad + 1 + length, device=device).expand(batch, length)
        return torch.arange(past_length, past_length + length, device=device).expand(batch, length)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=None,
                output_attentions=False, output_hidden_states=False, first_only=False, skip_padding=False, **unused):
        """first_only: the caller reads position 0 only (a sequence classifier), so the last block may compute that row
        alone and last_hidden_state be (B, 1, hidden); ignored when every position shows (hidden states, attentions)
        or when the stack is causal (a lone query would lose its causal mask: attention() masks only Tq > 1).
        skip_padding: in training, the caller reads no padded position (model._padding_unread), so a plain encoder's
        layers may run on the real tokens only (pack); last_hidden_state is then zero at the padding."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None and input_ids.dim() == 1:
            input_ids = input_ids[None]
        checkpointing = self.gradient_checkpointing if self.training and torch.is_grad_enabled() else None
        if use_cache is None:  # as transformers: decoders return their cache unless told not to
            use_cache = self.causal and self.config.get("use_cache", True)
        if checkpointing:  # a recomputed block would write its keys and values into the cache twice
            use_cache, past_key_values = False, None
        if use_cache and past_key_values is None:
            past_key_values = KVCache(len(self.schedule))
        cache = past_key_values if use_cache or past_key_values is not None else None
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None and self.spec.position in ("learned", "rotary", "sinusoidal", "sinusoidal_fairseq"):
            position_ids = self.position_ids(input_ids, inputs_embeds, past, attention_mask)
        masked = {"attention_mask": attention_mask} if getattr(self.embeddings, "takes_mask", False) else {}
        x = self.embeddings(input_ids, position_ids, token_type_ids, inputs_embeds, **masked)
        length = x.shape[1]
        biases = {window: attention_bias(attention_mask, length, past + length, self.causal, x.dtype, window)
                  for window in set(self.windows)}
        if self.relative_bias is not None:
            biases = {window: self.relative_bias(length, past + length, bias, self.causal, x.dtype)
                      for window, bias in biases.items()}
        cross_bias = None
        if encoder_hidden_states is not None:
            cross_bias = attention_bias(encoder_attention_mask, length, encoder_hidden_states.shape[1], False, x.dtype)
        rotary = self.rotary(position_ids, x.dtype) if self.rotary is not None else None
        rotaries = {theta: table(position_ids, x.dtype) for theta, table in (self.layer_rotary or {}).items()}
        relative = self.attention_context(length, x.device) if self.attention_context is not None else None
        # ALBERT's last depth may run several shared blocks: only the very last block narrows to position 0
        last_block = (len(self.schedule) - 1, self.schedule[-1][-1])
        first_only = first_only and not (self.causal or output_hidden_states or output_attentions)
        packed = None
        if (skip_padding and self.training and torch.is_grad_enabled() and cache is None
                and encoder_hidden_states is None and not (output_hidden_states or output_attentions)
                and self.packable(attention_mask)):
            x, packed = self.pack(x, attention_mask)
        hidden_states, attentions, cross_attentions = [], [], []
        for depth, group in enumerate(self.schedule):
            if output_hidden_states:
                hidden_states.append(x)
            for index in group:
                block = self.layers[index]
                narrow = first_only and (depth, index) == last_block
                if packed is not None and narrow:  # the classifier's row 0: back to the padded layout for it
                    x, packed = self.unpack(x, packed), None
                if checkpointing:  # recompute this block's activations in the backward pass
                    block = partial(torch.utils.checkpoint.checkpoint, block, **checkpointing)
                x, probs, cross_probs = block(
                    x, biases[self.windows[depth]], cache=cache, layer_idx=depth,
                    rotary=rotaries[self.layer_thetas[depth]] if rotaries else rotary, is_causal=self.causal,
                    encoder_states=encoder_hidden_states, cross_bias=cross_bias, output_attentions=output_attentions,
                    first_only=narrow, relative=relative, **({"packed": packed} if packed is not None else {}))
                attentions.append(probs)
                cross_attentions.append(cross_probs)
        if output_hidden_states and not self.spec.hidden_states_normed:
            hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        x = dropout(x, self.final_dropout, self.training)
        if packed is not None:
            x = self.unpack(x, packed)
        if output_hidden_states and self.spec.hidden_states_normed:
            hidden_states.append(x)
        return ModelOutput(
            last_hidden_state=x,
            pooler_output=torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None,
            past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions)
            if output_attentions and encoder_hidden_states is not None else None,
        )
