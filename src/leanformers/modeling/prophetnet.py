"""ProphetNet: a post-norm encoder (the shared Transformer) and an n-gram decoder that runs, next to the main stream,
`ngram` predict streams: stream s at position t predicts token t+1+s. Each stream attends to the main stream's keys
(causally, stream s lagging s positions) and to its own token only; the main stream never sees the predict streams.
Attention scores carry a relative position bias read from the attending hidden state (a linear map to one value per
bucket and head). The logits are those of predict stream 0 (the next token); `logits_ngram` are the later streams'.

Numbers follow transformers 4.57.6 exactly, including two of its quirks, reproduced on purpose:
- the predict streams' position-bias table is gathered in a scrambled row order (see `_predict_relative`), so a
  position's logits depend on how many decoder tokens the call holds: a decoding step (one token, where the order
  is not scrambled) does not reproduce the same position inside a longer full forward;
- once a cache holds earlier positions, no mask is applied: a decoding step sees every cached position, so the later
  predict streams (logits_ngram) differ from a full forward there; the main logits do not.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, attention_bias
from .cache import KVCache
from .heads import LMHead
from .layers import MLP, Embeddings, dropout, norm
from .outputs import ModelOutput
from .seq2seq import EncoderDecoder, Seq2SeqModel, side_config


def relative_buckets(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """key - query distances -> bucket ids, looking back only: exact for near distances, log-spaced up to
    max_distance; keys ahead of the query share bucket 0 (transformers' compute_relative_buckets)."""
    distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    far = exact + torch.log(distance.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    far = torch.min(far, torch.full_like(far, num_buckets - 1)).int()
    return torch.where(distance < exact, distance.int(), far).long()


def ngram_bias(length: int, ngram: int, dtype, device) -> torch.Tensor:
    """(ngram, T, 2T) additive mask of the predict streams over [main keys | own keys]: stream s at t sees main
    positions <= t - s (and always position 0), and of its own stream only itself."""
    query = torch.arange(length, device=device)[:, None]
    key = torch.arange(length, device=device)[None, :]
    lag = torch.arange(ngram, device=device)[:, None, None]
    main = (key <= query - lag) | (key == 0)
    own = (key == query).expand(ngram, length, length)
    allowed = torch.cat([main, own], dim=-1)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)


def _predict_relative(table: torch.Tensor, buckets: torch.Tensor, heads: int) -> torch.Tensor:
    """table (B, n, T, buckets, H) per predict-stream position; buckets (T, K) -> bias (B, n, H, T, K).

    transformers lays the table out as rows (B, T, n, H) but reads the bucket ids as rows (B, n, H, T): row r gets
    the ids of query position r % T. The same flat gather is done here, so that the numbers are its numbers."""
    batch, ngram, length, num_buckets, _ = table.shape
    rows = table.permute(0, 2, 1, 4, 3).reshape(-1, num_buckets)
    index = buckets.repeat(rows.shape[0] // length, 1)
    return rows.gather(1, index).view(batch, ngram, heads, length, -1)


class NgramSelfAttention(nn.Module):
    """Self-attention of the main stream and the predict streams with their relative position biases."""

    def __init__(self, hidden: int, heads: int, ngram: int, num_buckets: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.ngram, self.num_buckets = heads, ngram, num_buckets
        self.dropout = dropout  # on the attention probabilities, in train() mode
        self.head_dim = hidden // heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.relative = nn.Linear(hidden, num_buckets * heads)

    def _split(self, x):  # (B, L, hidden) -> (B, H, L, D)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, length: int, masks, buckets, cache=None, layer_idx=0):
        """x (B, (1+n)*T, hidden), main stream first; masks (main (B,1,T,S), predict (B,n,1,T,S+T)) or Nones;
        buckets (main (T, S), predict (T, S+T)) -> (B, (1+n)*T, hidden), main probs (B, H, T, S), predict probs
        (B, n, H, T, S+T)."""
        batch, n, heads, dim = x.shape[0], self.ngram, self.heads, self.head_dim
        q = self._split(self.q(x)) / dim ** 0.5
        k, v = self._split(self.k(x)), self._split(self.v(x))
        main_k, main_v = k[:, :, :length], v[:, :, :length]
        if cache is not None:  # only the main stream is kept: later steps' predict streams read its keys
            main_k, main_v = cache.update(layer_idx, main_k, main_v)
        table = self.relative(x).view(batch, -1, self.num_buckets, heads)  # (B, L, buckets, H)

        main_table = table[:, :length].permute(0, 3, 1, 2)  # (B, H, T, buckets)
        main_bias = main_table.gather(-1, buckets[0].expand(batch, heads, *buckets[0].shape))
        main_out, main_probs = self._attend(q[:, :, :length], main_k, main_v, main_bias, masks[0])  # (B, H, T, D)

        def streams(t):  # (B, H, n*T, D) -> (B, n, H, T, D)
            return t[:, :, length:].reshape(batch, heads, n, length, dim).transpose(1, 2)

        keys = torch.cat([main_k[:, None].expand(-1, n, -1, -1, -1), streams(k)], dim=3)
        values = torch.cat([main_v[:, None].expand(-1, n, -1, -1, -1), streams(v)], dim=3)
        predict_bias = _predict_relative(table[:, length:].reshape(batch, n, length, self.num_buckets, heads),
                                         buckets[1], heads)
        predict_out, predict_probs = self._attend(streams(q), keys, values, predict_bias, masks[1])  # (B,n,H,T,D)
        out = torch.cat([main_out[:, None], predict_out], dim=1)  # (B, 1+n, H, T, D)
        return self.o(out.transpose(2, 3).reshape(batch, -1, heads * dim)), main_probs, predict_probs

    def _attend(self, q, k, v, bias, mask):
        scores = q @ k.transpose(-1, -2) + bias
        if mask is not None:
            scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
        return dropout(probs, self.dropout, self.training) @ v, probs


class NgramDecoderLayer(nn.Module):
    def __init__(self, config, ngram: int):
        super().__init__()
        hidden, heads, eps = config.hidden_size, config.num_attention_heads, config.layer_norm_eps
        attention_dropout = config.get("attention_dropout", 0.0)
        self.attention = NgramSelfAttention(hidden, heads, ngram, config.num_buckets, attention_dropout)
        self.attention_norm = norm("layer", hidden, eps)
        self.cross_attention = Attention(hidden, heads, kv_hidden=hidden, dropout=attention_dropout)
        self.cross_attention_norm = norm("layer", hidden, eps)
        self.mlp = MLP(hidden, config.intermediate_size, config.hidden_act,
                       dropout=config.get("activation_dropout", 0.0))
        self.mlp_norm = norm("layer", hidden, eps)
        self.dropout = config.get("dropout", 0.0)  # on each sublayer's output, in train() mode

    def forward(self, x, length, masks, buckets, encoder_states, cross_bias, cache, layer_idx,
                output_attentions=False):
        """-> (x, (main probs, predict probs, cross-attention scores) when output_attentions, else None)."""
        out, main_probs, predict_probs = self.attention(x, length, masks, buckets, cache, layer_idx)
        x = self.attention_norm(x + dropout(out, self.dropout, self.training))
        cross_scores = None
        if encoder_states is not None:
            if output_attentions:
                cross_scores = attention_scores(self.cross_attention, x, encoder_states, cross_bias)
            out, _ = self.cross_attention(x, cross_bias, cache=cache, layer_idx=layer_idx, kv_states=encoder_states)
            x = self.cross_attention_norm(x + dropout(out, self.dropout, self.training))
        out = self.mlp_norm(x + dropout(self.mlp(x), self.dropout, self.training))
        return out, (main_probs, predict_probs, cross_scores) if output_attentions else None


def attention_scores(attention: Attention, x, kv_states, bias):
    """What transformers' ProphetNetAttention returns as its attentions: the scores before the softmax, with the
    padding mask added, (B, H, Tq, S); recomputed from the inputs, for output_attentions only."""
    q = attention._heads(attention.q(x), attention.num_heads) * attention.scale
    k = attention._heads(attention.k(kv_states), attention.num_kv_heads)
    scores = q @ k.transpose(-1, -2)
    return scores if bias is None else scores + bias


class NgramDecoder(nn.Module):
    def __init__(self, spec, config, embeddings: Embeddings):
        super().__init__()
        self.config, self.ngram = config, config.ngram
        self.num_buckets, self.max_distance = config.num_buckets, config.relative_max_distance
        self.embeddings = embeddings  # word + position (+1 past pad_token_id) + LayerNorm: the main stream
        self.ngram_embeddings = nn.Embedding(self.ngram, config.hidden_size)
        self.layers = nn.ModuleList(NgramDecoderLayer(config, self.ngram) for _ in range(config.num_hidden_layers))

    def _streams(self, input_ids, inputs_embeds, past: int, length: int):
        """(B, (1+n)*T, hidden): the main stream's embeddings, then each predict stream's (its ngram embedding plus
        the next position's embedding, normed)."""
        position, offset = self.embeddings.position, self.embeddings.position_offset
        if past + length + offset >= position.num_embeddings:
            raise ValueError(f"decoder position {past + length} is past ProphetNet's position table "
                             f"(max_position_embeddings={position.num_embeddings}); shorten decoder_input_ids")
        device = position.weight.device
        positions = torch.arange(past, past + length, device=device)[None]
        main = self.embeddings(input_ids, positions, None, inputs_embeds)
        # transformers gives stream s the ngram embedding s - 1 (stream 0 takes the last one)
        order = torch.arange(-1, self.ngram - 1, device=device) % self.ngram
        predict = self.ngram_embeddings.weight[order][:, None] + position(positions + offset + 1)  # (n, T, hidden)
        predict = self.embeddings.norm(predict).to(main.dtype).reshape(1, -1, main.shape[-1])
        return torch.cat([main, predict.expand(main.shape[0], -1, -1)], dim=1)

    def _masks(self, attention_mask, length: int, dtype, device):
        """Additive masks of the first call (none once a cache holds earlier positions, as transformers)."""
        minimum = torch.finfo(dtype).min
        main = torch.full((length, length), minimum, dtype=dtype, device=device).triu(1)[None, None]
        predict = ngram_bias(length, self.ngram, dtype, device)[None, :, None]  # (1, n, 1, T, 2T)
        if attention_mask is not None:  # padding: masked main keys; the own-stream half is never padded
            padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * minimum  # (B, 1, 1, T)
            main = main + padding
            predict = predict + torch.cat([padding, torch.zeros_like(padding)], dim=-1)[:, None]
        return main, predict

    def _buckets(self, past: int, length: int, device):
        """(main (T, S), predict (T, S+T)) bucket ids; keys of the main stream sit at 0..S-1, queries at
        past..past+T-1; a predict stream measures main keys from one position further on."""
        query = torch.arange(past, past + length, device=device)[:, None]
        main_keys = torch.arange(past + length, device=device)[None]
        own_keys = torch.arange(past, past + length, device=device)[None]
        main = relative_buckets(main_keys - query, self.num_buckets, self.max_distance)
        predict = relative_buckets(torch.cat([main_keys - 1, own_keys + 1], dim=1) - query, self.num_buckets,
                                   self.max_distance)
        return main, predict

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, past_key_values=None,
                encoder_hidden_states=None, encoder_attention_mask=None, use_cache=None, output_attentions=False,
                output_hidden_states=False, **unused):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder_input_ids or decoder_inputs_embeds")
        if use_cache is None:
            use_cache = self.config.get("use_cache", True)
        if use_cache and past_key_values is None:
            past_key_values = KVCache(len(self.layers))
        cache = past_key_values
        past = cache.get_seq_length() if cache is not None else 0
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if past and length != 1:
            raise ValueError("ProphetNet decodes one token at a time once past_key_values holds earlier positions; "
                             f"got {length} decoder tokens")
        x = self._streams(input_ids, inputs_embeds, past, length)
        masks = (None, None) if past else self._masks(attention_mask, length, x.dtype, x.device)
        buckets = self._buckets(past, length, x.device)
        cross_bias = None
        if encoder_hidden_states is not None:
            cross_bias = attention_bias(encoder_attention_mask, x.shape[1], encoder_hidden_states.shape[1], False,
                                        x.dtype)
        states, attentions = [], []
        for index, layer in enumerate(self.layers):
            states.append(x)
            x, probs = layer(x, length, masks, buckets, encoder_hidden_states, cross_bias, cache, index,
                             output_attentions)
            attentions.append(probs)
        states.append(x)
        shown = output_attentions  # transformers' names: main stream, predict streams, cross-attention (scores)
        return ModelOutput(
            last_hidden_state=x[:, :length],
            last_hidden_state_ngram=x[:, length:],
            past_key_values=cache if use_cache else None,
            hidden_states=tuple(s[:, :length] for s in states) if output_hidden_states else None,
            hidden_states_ngram=tuple(s[:, length:] for s in states) if output_hidden_states else None,
            attentions=tuple(a[0] for a in attentions) if shown else None,
            ngram_attentions=tuple(a[1] for a in attentions) if shown else None,
            cross_attentions=tuple(a[2] for a in attentions) if shown and encoder_hidden_states is not None else None,
        )


class ProphetNetStack(EncoderDecoder):
    """The base model: the shared post-norm encoder and the n-gram decoder, one word-embedding table for both."""

    def build_decoder(self, decoder_side, embeddings) -> nn.Module:
        return NgramDecoder(*decoder_side, embeddings)

    def forward(self, input_ids=None, attention_mask=None, encoder_outputs=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False, **kwargs):
        """As EncoderDecoder; with output_attentions the encoder's attentions are its scores before the softmax
        (masked), as transformers' ProphetNetAttention returns them, recomputed from each layer's input."""
        if output_attentions and encoder_outputs is None:
            encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                   use_cache=False, output_hidden_states=True)
            length = encoded.last_hidden_state.shape[1]
            bias = attention_bias(attention_mask, length, length, False, encoded.last_hidden_state.dtype)
            scores = tuple(attention_scores(layer.attention, h, h, bias)
                           for layer, h in zip(self.encoder.layers, encoded.hidden_states))
            encoder_outputs = ModelOutput(last_hidden_state=encoded.last_hidden_state, attentions=scores,
                                          hidden_states=encoded.hidden_states if output_hidden_states else None)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, encoder_outputs=encoder_outputs,
                               inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, **kwargs)

    @staticmethod
    def outputs(decoder, encoder_outputs) -> ModelOutput:
        return ModelOutput(
            last_hidden_state=decoder.last_hidden_state,
            last_hidden_state_ngram=decoder.last_hidden_state_ngram,
            past_key_values=decoder.past_key_values,
            decoder_hidden_states=decoder.hidden_states,
            decoder_ngram_hidden_states=decoder.hidden_states_ngram,
            decoder_attentions=decoder.attentions,
            decoder_ngram_attentions=decoder.ngram_attentions,
            cross_attentions=decoder.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.get("attentions"),
        )


class NgramLMHead(LMHead):
    """The vocabulary projection of every predict stream: logits (stream 0, the next token) and logits_ngram."""

    def __init__(self, config, ngram: int):
        super().__init__(config)
        self.ngram = ngram

    def forward(self, outputs, **inputs):
        streams = outputs.last_hidden_state_ngram  # (B, n*T, hidden)
        logits = self.decoder(streams.view(streams.shape[0], self.ngram, -1, streams.shape[-1]))  # (B, n, T, V)
        return {"logits": logits[:, 0].contiguous(), "logits_ngram": logits[:, 1:] if self.ngram > 1 else None}


class ProphetNetFamily(Seq2SeqModel):
    output_order = ("past_key_values", "decoder_hidden_states", "decoder_ngram_hidden_states", "decoder_attentions",
                    "decoder_ngram_attentions", "cross_attentions", "encoder_last_hidden_state",
                    "encoder_hidden_states", "encoder_attentions")  # ProphetNetSeq2SeqLMOutput's fields
    def side(self, config, side: str) -> tuple:
        # positions count from pad_token_id + 1 (ProphetNetPositionalEmbeddings); the table has
        # max_position_embeddings rows in all, so the usable length is that much shorter
        offset = config.pad_token_id + 1
        spec = dataclasses.replace(self.spec, position_offset=offset)
        return spec, side_config(
            config, side, num_hidden_layers=config.get(f"num_{side}_layers"),
            num_attention_heads=config.get(f"num_{side}_attention_heads"),
            intermediate_size=config.get(f"{side}_ffn_dim"), hidden_act=config.get("activation_function", "gelu"),
            layer_norm_eps=1e-5, max_position_embeddings=config.max_position_embeddings - offset)

    def build_base(self, config) -> nn.Module:
        return ProphetNetStack(self.side(config, "encoder"), self.side(config, "decoder"), shared=True)

    def build_head(self, config) -> nn.Module | None:
        if self.task == "seq2seq_lm":
            return NgramLMHead(config, config.ngram)
        return super().build_head(config)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, labels=None, return_dict=True,
                decoder_inputs_embeds=None, **kwargs):
        """As Seq2SeqModel, with ProphetNet's loss: every predict stream is scored against the labels (only stream
        0 when config.disable_ngram_loss), label smoothing config.eps; a call with labels keeps its cache."""
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.shift_right(labels)
        out = super().forward(input_ids, attention_mask, decoder_input_ids, decoder_inputs_embeds=decoder_inputs_embeds,
                              **kwargs)
        if labels is not None and self.task == "seq2seq_lm":
            out = ModelOutput(loss=self.ngram_loss(out.logits, out.logits_ngram, labels), **out)
        return out if return_dict else out.to_tuple()

    def ngram_loss(self, logits, logits_ngram, labels):
        streams = logits[:, None] if logits_ngram is None else torch.cat([logits[:, None], logits_ngram], dim=1)
        targets = labels[:, None].expand(-1, streams.shape[1], -1).clone()  # (B, n, T)
        if self.config.get("disable_ngram_loss", False):
            targets[:, 1:] = -100
        log_probs = F.log_softmax(streams.transpose(0, 1).reshape(-1, streams.shape[-1]), dim=-1, dtype=torch.float32)
        targets = targets.transpose(0, 1).reshape(-1)
        loss = F.nll_loss(log_probs, targets, ignore_index=-100)
        eps = self.config.get("eps", 0.0)
        if eps > 0.0:
            smooth = -log_probs.sum(dim=-1)[targets.ne(-100)].mean()
            loss = (1.0 - eps) * loss + eps / log_probs.shape[-1] * smooth
        return loss
