"""DeBERTa-v2/v3's disentangled attention: content-to-content scores plus content-to-position (c2p) and
position-to-content (p2c) scores against a shared table of relative-position embeddings, the distances bucketed
logarithmically past position_buckets / 2. Also DeBERTa's embeddings (project, then norm; positions and token types
only when the config has them)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .attention import Attention
from .layers import dropout


def _pos_att_type(config) -> list[str]:
    kinds = config.get("pos_att_type") or []
    return [k.strip() for k in kinds.lower().split("|")] if isinstance(kinds, str) else list(kinds)


def _span(config) -> tuple[int, int]:
    """(number of relative embeddings per side, max_relative_positions) as DisentangledSelfAttention sets them."""
    max_relative = config.get("max_relative_positions", -1)
    if max_relative < 1:
        max_relative = config.max_position_embeddings
    buckets = config.get("position_buckets", -1)
    return (buckets if buckets > 0 else max_relative), max_relative


def log_bucket_position(relative: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """Distances within bucket_size / 2 stay exact; farther ones share log-spaced buckets (make_log_bucket_position)."""
    sign = torch.sign(relative)
    mid = bucket_size // 2
    near = (relative < mid) & (relative > -mid)
    absolute = torch.where(near, torch.tensor(mid - 1).type_as(relative), relative.abs())
    log_pos = torch.ceil(torch.log(absolute / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1))
    log_pos = log_pos + mid
    return torch.where(absolute <= mid, relative.type_as(log_pos), log_pos * sign)


class RelativeEmbeddings(nn.Module):
    """The encoder's relative-position table (rel_embeddings), layer-normed when norm_rel_ebd says "layer_norm"."""

    def __init__(self, config):
        super().__init__()
        self.span, self.max_relative = _span(config)
        self.buckets = config.get("position_buckets", -1)
        self.embedding = nn.Embedding(self.span * 2, config.hidden_size)
        norms = [x.strip() for x in config.get("norm_rel_ebd", "none").lower().split("|")]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if "layer_norm" in norms else None

    def forward(self, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (table (2*span, hidden), relative positions (T, T): query index - key index, bucketed)."""
        table = self.embedding.weight if self.norm is None else self.norm(self.embedding.weight)
        positions = torch.arange(length, device=device)
        relative = positions[:, None] - positions[None, :]
        if self.buckets > 0 and self.max_relative > 0:
            relative = log_bucket_position(relative, self.buckets, self.max_relative)
        return table, relative.long()


class DisentangledAttention(Attention):
    """Self-attention whose scores add c2p and p2c terms; all three are divided by sqrt(head_dim * (1 + #terms)).
    `context`: the module the stack builds once (when config.relative_attention) to give every layer `relative`."""

    context = RelativeEmbeddings

    def __init__(self, config):
        super().__init__(config.hidden_size, config.num_attention_heads, head_dim=config.get("attention_head_size"),
                         dropout=config.get("attention_probs_dropout_prob") or 0.0)
        self.table_dropout = config.get("hidden_dropout_prob") or 0.0  # on the relative table (pos_dropout)
        self.kinds = _pos_att_type(config) if config.get("relative_attention", False) else []
        self.span = _span(config)[0]
        self.share_att_key = config.get("share_att_key", False)
        size = self.num_heads * self.head_dim
        if self.kinds and not self.share_att_key:  # separate projections of the position table
            self.pos_key = nn.Linear(config.hidden_size, size) if "c2p" in self.kinds else None
            self.pos_query = nn.Linear(config.hidden_size, size) if "p2c" in self.kinds else None
        self.scale = 1.0 / math.sqrt(self.head_dim * (1 + len([k for k in self.kinds if k in ("c2p", "p2c")])))

    def forward(self, x, bias=None, *, relative=None, output_attentions=False, queries=None, **unused):
        """x (B, T, hidden); relative = RelativeEmbeddings' (table, positions) -> (B, Tq, hidden), probs or None."""
        q = self._heads(self.q(x[:, :queries]), self.num_heads)
        k, v = self._project_kv(x)
        if bias is not None and bias.shape[2] == bias.shape[3] > 1:  # padded queries see no key either (DeBERTa's
            bias = torch.minimum(bias, bias.transpose(-1, -2))        # 2-D mask): their attention is uniform
        if self.kinds:
            position_bias = self._position_scores(q, k, *relative)
            bias = position_bias if bias is None else bias + position_bias
        out, probs = self._attend(q, k, v, bias, False, output_attentions)
        out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], self.num_heads * self.head_dim)
        return self.o(out), probs

    def _position_scores(self, q, k, table, relative):  # q (B, H, Tq, D), k (B, H, T, D) -> (B, H, Tq, T)
        table = dropout(table, self.table_dropout, self.training)[: 2 * self.span][None]  # (1, 2S, hidden)
        tq = q.shape[2]
        score = 0
        if "c2p" in self.kinds:  # query content x key's relative position
            pos_key = self._heads(self.k(table) if self.share_att_key else self.pos_key(table), self.num_heads)
            c2p = q @ pos_key.transpose(-1, -2)  # (B, H, Tq, 2S)
            index = torch.clamp(relative[:tq] + self.span, 0, 2 * self.span - 1)
            score = score + torch.gather(c2p, -1, index.expand(*c2p.shape[:2], *index.shape)) * self.scale
        if "p2c" in self.kinds:  # key content x query's relative position
            pos_query = self._heads(self.q(table) if self.share_att_key else self.pos_query(table), self.num_heads)
            p2c = k @ pos_query.transpose(-1, -2)  # (B, H, T, 2S)
            index = torch.clamp(-relative + self.span, 0, 2 * self.span - 1)
            p2c = torch.gather(p2c, -1, index.expand(*p2c.shape[:2], *index.shape)).transpose(-1, -2)
            score = score + p2c[:, :, :tq] * self.scale
        return score


class DebertaEmbeddings(nn.Module):
    """word (+ learned positions if position_biased_input) (+ token types if type_vocab_size > 0), projected to
    hidden_size when embedding_size differs, then LayerNorm (in that order, unlike BERT-family factorised ones)."""

    def __init__(self, spec, config):
        super().__init__()
        size = config.get("embedding_size", config.hidden_size)
        self.word = nn.Embedding(config.vocab_size, size)
        self.position = nn.Embedding(config.max_position_embeddings, size) \
            if config.get("position_biased_input", True) else None
        self.token_type = nn.Embedding(config.type_vocab_size, size) if config.get("type_vocab_size", 0) > 0 else None
        self.project = nn.Linear(size, config.hidden_size, bias=False) if size != config.hidden_size else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = config.get("hidden_dropout_prob") or 0.0

    takes_mask = True  # the stack passes attention_mask: padded positions are zeroed, as DeBERTa does

    def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None, attention_mask=None):
        x = self.word(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position is not None:
            x = x + self.position(position_ids)
        if self.token_type is not None:
            x = x + self.token_type(token_type_ids if token_type_ids is not None else torch.zeros_like(x[..., 0],
                                                                                                       dtype=torch.long))
        if self.project is not None:
            x = self.project(x)
        x = self.norm(x)
        x = x if attention_mask is None else x * attention_mask[..., None].to(x.dtype)
        return dropout(x, self.dropout, self.training)
