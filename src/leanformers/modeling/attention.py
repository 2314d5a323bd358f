"""One Attention for every architecture: self or cross, fused or split qkv, grouped-query, rotary, any additive bias
(padding / causal mask, T5's relative bias), over SDPA or an eager path that can return the probabilities."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import RMSNorm


def attention_bias(attention_mask, query_length: int, key_length: int, causal: bool, dtype,
                   window: int | None = None) -> torch.Tensor | None:
    """Additive bias (B, 1, Tq, Tk) from a (B, Tk) 0/1 padding mask, plus the causal triangle if `causal`, limited to
    the last `window` positions for sliding-window attention (Mistral: a query sees keys with q - k < window; an
    encoder's window is |q - k| <= window).

    Returns None when nothing is masked (SDPA then takes its fast path; a causal model passes is_causal instead).
    The queries are the last `query_length` of the `key_length` positions (a KV cache holds the earlier ones).
    """
    padded = attention_mask is not None and not bool(attention_mask.all())
    windowed = window is not None and key_length > window
    if not padded and not windowed and (not causal or query_length == key_length or query_length == 1):
        return None
    device = attention_mask.device if attention_mask is not None else None
    allowed = torch.ones(1, 1, query_length, key_length, dtype=torch.bool, device=device)
    if causal:
        past = key_length - query_length
        allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=device).tril(past)
        allowed = (allowed.triu(past - window + 1) if windowed else allowed)[None, None]
    elif windowed:  # bidirectional (ModernBERT's local layers): keys within `window` positions either side
        past = key_length - query_length
        allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=device)
        allowed = allowed.tril(past + window).triu(past - window)[None, None]
    if padded:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x, cos, sin):  # x (B, H, T, D); cos/sin (B, T, R), R <= D: partial rotary turns the first R only
    if cos.shape[-1] < x.shape[-1]:  # GPT-NeoX / Phi-3 partial_rotary_factor
        turned, kept = x[..., :cos.shape[-1]], x[..., cos.shape[-1]:]
        return torch.cat((turned * cos[:, None] + rotate_half(turned) * sin[:, None], kept), dim=-1)
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


class Attention(nn.Module):
    rotate = staticmethod(apply_rotary)  # (x, cos, sin) -> x rotated; quantized block models take a fused one

    def __init__(self, hidden: int, num_heads: int, *, num_kv_heads: int | None = None, head_dim: int | None = None,
                 bias: bool = True, out_bias: bool | None = None, fused_qkv: bool = False, scale: float | None = None,
                 kv_hidden: int | None = None, softcap: float | None = None, qk_norm_eps: float | None = None,
                 dropout: float = 0.0):
        """softcap: scores -> softcap * tanh(scores / softcap) before the mask (Gemma 2); qk_norm_eps: an RMSNorm over
        each head's queries and keys (Qwen3), with that eps; dropout: on the attention probabilities in train() mode."""
        super().__init__()
        self.dropout = dropout  # on the attention probabilities, in train() mode
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or hidden // num_heads
        self.scale = scale if scale is not None else self.head_dim ** -0.5
        q_size, kv_size = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        kv_hidden = kv_hidden or hidden
        if fused_qkv:
            self.qkv = nn.Linear(hidden, q_size + 2 * kv_size, bias=bias)
        else:
            self.q = nn.Linear(hidden, q_size, bias=bias)
            self.k = nn.Linear(kv_hidden, kv_size, bias=bias)
            self.v = nn.Linear(kv_hidden, kv_size, bias=bias)
        self.o = nn.Linear(q_size, hidden, bias=bias if out_bias is None else out_bias)
        self.softcap = softcap
        self.q_norm = RMSNorm(self.head_dim, qk_norm_eps) if qk_norm_eps is not None else None
        self.k_norm = RMSNorm(self.head_dim, qk_norm_eps) if qk_norm_eps is not None else None

    def _heads(self, x, n):  # (B, T, n*D) -> (B, n, T, D)
        return x.view(x.shape[0], x.shape[1], n, self.head_dim).transpose(1, 2)

    def packable(self) -> bool:
        """Whether forward(packed=...) applies: separate q/k/v projections, no per-head norms or score capping."""
        return type(self) is Attention and not hasattr(self, "qkv") and self.q_norm is None and self.softcap is None

    def _packed(self, x, bias, packed):
        index, batch, length = packed

        def heads(rows, n):  # (N, n*D) -> (B, n, T, D), zeros at the padding
            full = rows.new_zeros(batch * length, rows.shape[-1]).index_copy(0, index, rows)
            return full.view(batch, length, n, self.head_dim).transpose(1, 2)

        q = heads(self.q(x), self.num_heads)
        k, v = heads(self.k(x), self.num_kv_heads), heads(self.v(x), self.num_kv_heads)
        out, _ = self._attend(q, k, v, bias, False, False)
        out = out.transpose(1, 2).reshape(batch * length, self.num_heads * self.head_dim).index_select(0, index)
        return self.o(out), None

    def _project_kv(self, source):
        return self._heads(self.k(source), self.num_kv_heads), self._heads(self.v(source), self.num_kv_heads)

    def forward(self, x, bias=None, *, cache=None, layer_idx=0, rotary=None, kv_states=None, is_causal=False,
                output_attentions=False, queries=None, packed=None):
        """x (B, T, hidden); bias additive (B|1, H|1, Tq, S) or None; kv_states (B, S, kv_hidden) for cross-attention.
        `queries`: in self-attention only the first `queries` positions of x ask (keys and values still come from all
        of x), so the output is (B, Tq=queries, hidden); None = every position asks.
        `packed` = (index, B, T): x is (N, hidden), the real tokens of a padded (B, T) batch (`index` their flat
        positions); the projections run on those N rows only, attention on the padded layout; output (N, hidden)."""
        if packed is not None:
            return self._packed(x, bias, packed)
        if kv_states is None:  # self-attention
            if hasattr(self, "qkv"):
                sizes = [self.num_heads * self.head_dim] + [self.num_kv_heads * self.head_dim] * 2
                q, k, v = self.qkv(x).split(sizes, -1)
                q = self._heads(q[:, :queries], self.num_heads)
                k, v = self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)
            else:
                q = self._heads(self.q(x[:, :queries]), self.num_heads)
                k, v = self._project_kv(x)
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            if rotary is not None:
                q, k = self.rotate(q, *(t[:, :queries] for t in rotary)), self.rotate(k, *rotary)
            if cache is not None:
                k, v = cache.update(layer_idx, k, v)
        else:  # cross-attention: K/V of the encoder output are computed once and kept in the cache
            if cache is not None and cache.cross[layer_idx] is not None:
                k, v = cache.cross[layer_idx]
            else:
                k, v = self._project_kv(kv_states)
                if cache is not None:
                    cache.cross[layer_idx] = (k, v)
            if k.shape[0] != x.shape[0]:  # beam search: B sentences' K/V for their B*k beam rows
                return self._cross_grouped(x, k, v, bias, output_attentions)
            q = self._heads(self.q(x), self.num_heads)
        out, probs = self._attend(q, k, v, bias, is_causal and bias is None and q.shape[2] > 1, output_attentions)
        out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], self.num_heads * self.head_dim)
        return self.o(out), probs

    def _cross_grouped(self, x, k, v, bias, output_attentions):
        """Cross-attention of N = B*k decoder rows (each sentence's k beams on consecutive rows, as repeat_interleave
        orders them) to the K/V of their B sentences, without k copies of the encoder output: the beams of a sentence
        become extra queries of it. x (N, T, hidden), k/v (B, Hkv, S, D), bias (B|1, H|1, T|1, S)
        -> (N, T, hidden), probabilities (N, H, T, S) or None. Each query does the same arithmetic as when expanded."""
        rows, length = x.shape[:2]
        batch, group = k.shape[0], x.shape[0] // k.shape[0]
        if rows != batch * group:
            raise ValueError(f"cross-attention: {rows} decoder rows for {batch} encoder rows; the decoder batch must "
                             "be the encoder batch times the number of beams (or sequences) per input")
        if bias is not None and bias.shape[0] not in (1, batch):
            raise ValueError(f"cross-attention: the encoder attention mask has {bias.shape[0]} rows for {batch} "
                             "encoder rows; pass one mask row per encoder row")
        q = self._heads(self.q(x).view(batch, group * length, -1), self.num_heads)  # (B, H, k*T, D), a free view
        if bias is not None and bias.shape[2] > 1:  # a row per query position: the same rows for every beam
            bias = bias.repeat(1, 1, group, 1)
        out, probs = self._attend(q, k, v, bias, False, output_attentions)
        out = out.transpose(1, 2).reshape(rows, length, self.num_heads * self.head_dim)  # (B, k*T, H, D) in row order
        if probs is not None:  # (B, H, k*T, S) -> (N, H, T, S)
            probs = probs.unflatten(2, (group, length)).transpose(1, 2).reshape(rows, self.num_heads, length, -1)
        return self.o(out), probs

    def _attend(self, q, k, v, bias, is_causal, output_attentions):  # (B, H, T, D), (B, Hkv, S, D) -> (B, H, T, D)
        if not output_attentions and self.softcap is None:
            gqa = self.num_kv_heads != self.num_heads
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=is_causal, scale=self.scale,
                                                 enable_gqa=gqa, dropout_p=self.dropout if self.training else 0.0)
            return out, None
        if self.num_kv_heads != self.num_heads:
            k = k.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
            v = v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) * self.scale
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        if bias is not None:
            scores = scores + bias
        elif is_causal:
            T, S = scores.shape[-2:]
            scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T), float("-inf"))
        probs = scores.float().softmax(-1).to(q.dtype)
        if self.training and self.dropout > 0:  # the returned probabilities are the ones before dropout
            return F.dropout(probs, self.dropout, True) @ v, probs if output_attentions else None
        return probs @ v, probs if output_attentions else None
