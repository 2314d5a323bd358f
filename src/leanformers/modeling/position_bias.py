"""T5's relative position bias: one learned scalar per head and bucket of the key-query distance (exact for near
distances, log-spaced up to max_distance), computed once per forward and added to every layer's attention scores."""
from __future__ import annotations

import math

import torch
from torch import nn


class RelativePositionBias(nn.Module):
    def __init__(self, config, bidirectional: bool):
        super().__init__()
        self.num_buckets = config.get("relative_attention_num_buckets", 32)
        self.max_distance = config.get("relative_attention_max_distance", 128)
        self.bidirectional = bidirectional  # the encoder looks both ways; the decoder only back
        self.embedding = nn.Embedding(self.num_buckets, config.num_attention_heads)

    def bucket(self, relative: torch.Tensor) -> torch.Tensor:  # (Tq, Tk) key - query distances -> bucket ids
        buckets, num_buckets = 0, self.num_buckets
        if self.bidirectional:
            num_buckets //= 2
            buckets = (relative > 0).long() * num_buckets
            relative = relative.abs()
        else:
            relative = -torch.min(relative, torch.zeros_like(relative))
        exact = num_buckets // 2
        far = exact + (torch.log(relative.float() / exact) / math.log(self.max_distance / exact)
                       * (num_buckets - exact)).long()
        far = torch.min(far, torch.full_like(far, num_buckets - 1))
        return buckets + torch.where(relative < exact, relative, far)

    def forward(self, query_length: int, key_length: int, mask: torch.Tensor | None, causal: bool, dtype):
        """(1, H, Tq, Tk) bias for the last `query_length` of `key_length` positions, plus `mask` (B, 1, Tq, Tk) or,
        without one, the causal triangle (the bias rules out SDPA's is_causal shortcut)."""
        device = self.embedding.weight.device
        query = torch.arange(key_length - query_length, key_length, device=device)[:, None]
        relative = torch.arange(key_length, device=device)[None, :] - query
        bias = self.embedding(self.bucket(relative)).permute(2, 0, 1)[None].to(dtype)
        if mask is None and causal and query_length > 1:
            mask = torch.full((query_length, key_length), torch.finfo(dtype).min, dtype=dtype, device=device)
            mask = mask.triu(key_length - query_length + 1)[None, None]
        return bias if mask is None else bias + mask
