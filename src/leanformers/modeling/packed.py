"""Pre-packed fp32 linears for decoding on a CPU (MKL's packed GEMM, as torch.compile's CPU freezing uses).

A decode step multiplies a few rows (batch x beams) by every weight matrix. MKL's sgemm re-packs the weight into its
blocked layout on every call; with 4-256 rows that repacking costs as much as the product itself. Packing each weight
once (cblas_sgemm_pack) and calling cblas_sgemm_compute on it halves a GPT-2-size step at batch 8 (0.85 -> 0.36 ms
for a 768 x 2304 weight and 8 rows, 1 thread) and cuts Marian's 512 x 59514 head from 28 to 16 ms at 16 rows.

Numbers: from 17 rows on the packed product is bitwise F.linear's (the same MKL kernel, bias copied in first as
addmm does). With 4-16 rows F.linear takes MKL's small-matrix path instead, and the two differ by float rounding
(~1e-7 relative). One row (batch-1 decoding, weight streaming) gains nothing and keeps F.linear.

Packing costs a copy of each weight it packs (the original stays: other row counts, training and state_dict use it),
so it is done lazily, per weight, on the first call that can use it, and only for models generate() expects to decode
several rows at a time. LEANFORMERS_PACKED_LINEAR=0 turns it off.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS, MAX_ROWS = 4, 256  # outside this range packing does not pay (measured, bench/RESULTS.md)


def available() -> bool:
    return (os.environ.get("LEANFORMERS_PACKED_LINEAR", "1") != "0" and torch.backends.mkl.is_available()
            and hasattr(torch.ops.mkl, "_mkl_linear"))


class PackedLinear(nn.Linear):
    """An nn.Linear (same parameters, same state_dict) whose inference calls with 4-256 fp32 rows on the CPU use a
    packed copy of the weight. A Linear becomes one by `enable(model)`; the packed copy follows the weight's data
    pointer, so a weight replaced or moved after packing is packed again, not used stale."""

    packed: torch.Tensor | None = None
    packed_for: tuple | None = None

    def __getstate__(self):  # copy.deepcopy / torch.save: the packed copy is opaque to them; it is remade on use
        return {k: v for k, v in super().__getstate__().items() if k not in ("packed", "packed_for")}

    def forward(self, x):
        weight = self.weight
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if (not MIN_ROWS <= rows <= MAX_ROWS or x.dtype != torch.float32 or weight.dtype != torch.float32
                or x.device.type != "cpu" or weight.device.type != "cpu" or torch.is_grad_enabled() and
                (weight.requires_grad or x.requires_grad)):
            return F.linear(x, weight, self.bias)
        key = (weight.data_ptr(), weight._version, torch.get_num_threads())
        if self.packed_for != key:  # first use, or the weight changed since packing
            self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach().contiguous(), rows)
            self.packed_for = key
        return torch.ops.mkl._mkl_linear(x if x.is_contiguous() else x.contiguous(), self.packed, weight.detach(),
                                         None if self.bias is None else self.bias.detach(), rows)


def enable(model: nn.Module) -> int:
    """Make every nn.Linear of `model` a PackedLinear (nothing is packed until a call can use it); returns how many."""
    if not available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = PackedLinear
            count += 1
    return count


def disable(model: nn.Module):
    """Back to plain nn.Linear, dropping the packed copies."""
    for module in model.modules():
        if isinstance(module, PackedLinear):
            module.__dict__.pop("packed", None)
            module.__dict__.pop("packed_for", None)
            module.__class__ = nn.Linear
