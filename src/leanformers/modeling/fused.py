"""Reversible `convert` hooks for checkpoints that keep several of our weights in one tensor (Phi-3's gate_up_proj,
GPT-NeoX's per-head interleaved query_key_value). `SplitRows(...)` splits on loading; `.inverse` joins them back
(what save_pretrained needs), so each spec stays a table, not code."""
from __future__ import annotations

import re

import torch


class SplitRows:
    """A Spec.convert: one fused tensor -> its parts, along dim 0 (the output rows of a Linear weight or bias).

    fused: our fused name template -> our part templates, e.g. {"layers.{}.mlp.gate_up": ("layers.{}.mlp.gate",
    "layers.{}.mlp.up")}. Rows are laid out as [part 0 | part 1 | ...] (equal blocks), or, with per_head=True, per
    attention head as [head 0: part 0 | part 1 | ...][head 1: ...] (GPT-NeoX), config.num_attention_heads heads."""

    def __init__(self, fused: dict[str, tuple[str, ...]], per_head: bool = False):
        self.fused, self.per_head = fused, per_head
        self._patterns = [(re.compile(r"^(.*?)" + re.escape(name).replace(r"\{\}", r"(\d+)") + r"\.(weight|bias)$"),
                           parts) for name, parts in fused.items()]

    def __call__(self, state_dict: dict, config) -> dict:
        """Checkpoint tensors (our names) -> the same with each fused tensor replaced by its parts."""
        out = {}
        for name, tensor in state_dict.items():
            found = self._match(name)
            if found is None:
                out[name] = tensor
                continue
            prefix, layers, suffix, parts = found
            if self.per_head:  # (heads * n * D, ...) -> n tensors (heads * D, ...)
                heads = config.num_attention_heads
                grouped = tensor.reshape(heads, len(parts), -1, *tensor.shape[1:])
                pieces = [grouped[:, i].reshape(-1, *tensor.shape[1:]) for i in range(len(parts))]
            else:
                pieces = tensor.chunk(len(parts), dim=0)
            for part, piece in zip(parts, pieces):
                out[f"{prefix}{part.format(*layers)}.{suffix}"] = piece.contiguous()
        return out

    def inverse(self, state_dict: dict, config) -> dict:
        """Our tensors -> the checkpoint's: the parts concatenated (or interleaved per head) back into one tensor."""
        out = dict(state_dict)
        for fused, parts in self.fused.items():
            first = re.compile(r"^(.*?)" + re.escape(parts[0]).replace(r"\{\}", r"(\d+)") + r"\.(weight|bias)$")
            for name in [n for n in state_dict if first.match(n)]:
                prefix, *layers, suffix = first.match(name).groups()
                names = [f"{prefix}{part.format(*layers)}.{suffix}" for part in parts]
                pieces = [out.pop(n) for n in names]
                if self.per_head:
                    heads = config.num_attention_heads
                    joined = torch.stack([p.reshape(heads, -1, *p.shape[1:]) for p in pieces], 1)
                    joined = joined.reshape(-1, *pieces[0].shape[1:])
                else:
                    joined = torch.cat(pieces, 0)
                out[f"{prefix}{fused.format(*layers)}.{suffix}"] = joined
        return out

    def _match(self, name):
        for pattern, parts in self._patterns:
            m = pattern.match(name)
            if m:
                prefix, *layers, suffix = m.groups()
                return prefix, layers, suffix, parts
        return None
