"""Rotary position embeddings: the (cos, sin) tables for position ids, with `rope_scaling` as transformers'
modeling_rope_utils computes it (default, linear, dynamic NTK, llama3, yarn)."""
from __future__ import annotations

import math

import torch
from torch import nn


def _default(base, dim, scaling, max_positions, seq_len=None):
    """inv_freq (dim/2,) = base^(-2i/dim), and the cos/sin multiplier (1.0)."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0


def _linear(base, dim, scaling, max_positions, seq_len=None):
    inv_freq, attention_factor = _default(base, dim, scaling, max_positions)
    return inv_freq / scaling["factor"], attention_factor


def _dynamic(base, dim, scaling, max_positions, seq_len=None):
    """NTK-aware: past max_positions, the base grows with the sequence length seen so far."""
    factor, seq_len = scaling["factor"], max(seq_len or max_positions, max_positions)
    base = base * ((factor * seq_len / max_positions) - (factor - 1)) ** (dim / (dim - 2))
    return _default(base, dim, scaling, max_positions)


def _llama3(base, dim, scaling, max_positions, seq_len=None):
    """Llama 3.1: long wavelengths divided by factor, short ones kept, a smooth blend in between."""
    inv_freq, attention_factor = _default(base, dim, scaling, max_positions)
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_context / high) * ~(wavelen > old_context / low)
    return torch.where(medium, smoothed, scaled), attention_factor


def _yarn(base, dim, scaling, max_positions, seq_len=None):
    """YaRN: interpolate low frequencies, extrapolate high ones (a linear ramp between), scale cos/sin."""
    factor = scaling["factor"]
    original = scaling.get("original_max_position_embeddings") or max_positions

    def mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(scaling.get("beta_fast") or 32), correction_dim(scaling.get("beta_slow") or 1)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention_factor


def _longrope(base, dim, scaling, max_positions, seq_len=None):
    """LongRoPE (Phi-3 128k, Phi-3.5): per-frequency factors, long_factor past the original context, short_factor
    within it; cos/sin scaled by sqrt(1 + log(factor) / log(original context)) unless attention_factor is given."""
    original = scaling.get("original_max_position_embeddings") or max_positions
    factor = max_positions / original if scaling.get("original_max_position_embeddings") else scaling.get("factor")
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    ext = torch.tensor(scaling["long_factor" if seq_len and seq_len > original else "short_factor"],
                       dtype=torch.float32)
    return 1.0 / (ext * base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), attention_factor


ROPE_TYPES = {"default": _default, "linear": _linear, "dynamic": _dynamic, "llama3": _llama3, "yarn": _yarn,
              "longrope": _longrope}


class Rotary(nn.Module):
    """(B, T) position ids -> cos, sin (B, T, head_dim) in the activations' dtype, computed in float32."""

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: dict | None = None, max_positions: int = 2048):
        super().__init__()
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type")) or "default"
        if kind not in ROPE_TYPES:
            raise NotImplementedError(f"rope_scaling type {kind!r} is not supported; "
                                      f"supported: {', '.join(ROPE_TYPES)}")
        self.kind, self.scaling, self.base, self.head_dim = kind, scaling or {}, base, head_dim
        self.max_positions = max_positions
        with torch.device("cpu"):  # a plain tensor, not a buffer: a model built on the meta device still has it
            self.inv_freq, self.attention_factor = ROPE_TYPES[kind](base, head_dim, self.scaling, max_positions)
        self.original_inv_freq, self.seen = self.inv_freq, max_positions

    @classmethod
    def from_config(cls, config, base: float | None = None):
        """The rotary table config.json asks for; `base` overrides rope_theta (a per-layer base)."""
        head_dim = config.get("head_dim") or config.hidden_size // config.num_attention_heads
        head_dim = int(head_dim * config.get("partial_rotary_factor", 1.0))  # GPT-NeoX, Phi-3: rotate a part
        base = base if base is not None else config.get("rope_theta", 10000.0)
        scaling = config.get("rope_scaling")
        if scaling and scaling.get("rope_type", scaling.get("type")) == "longrope":  # Phi-3 keeps it beside
            scaling = {"original_max_position_embeddings": config.get("original_max_position_embeddings"), **scaling}
        return cls(head_dim, base, scaling, config.get("max_position_embeddings", 2048))

    def _dynamic_update(self, position_ids):
        """transformers' dynamic_rope_update: grow the base past the longest length seen, reset when short again."""
        length = int(position_ids.max()) + 1
        if length > self.seen:
            self.inv_freq, self.attention_factor = _dynamic(self.base, self.head_dim, self.scaling,
                                                            self.max_positions, length)
            self.seen = length
        if length < self.max_positions < self.seen:
            self.inv_freq, self.seen = self.original_inv_freq, self.max_positions

    def forward(self, position_ids, dtype):
        if self.kind == "dynamic":
            self._dynamic_update(position_ids)
        if self.kind == "longrope":  # transformers' longrope_frequency_update: long factors past the original context
            original = self.scaling.get("original_max_position_embeddings") or self.max_positions
            long = int(position_ids.max()) + 1 > original
            self.inv_freq = _longrope(self.base, self.head_dim, self.scaling, self.max_positions,
                                      original + 1 if long else None)[0].to(position_ids.device)
        if self.inv_freq.device != position_ids.device:
            self.inv_freq = self.inv_freq.to(position_ids.device)
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, head_dim / 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_factor).to(dtype), (emb.sin() * self.attention_factor).to(dtype)
