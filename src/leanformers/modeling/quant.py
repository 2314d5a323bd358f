"""Quantized linears behind one `quantization=` switch (from_pretrained, pipeline, CLI, `model.quantize`).

Modes (`QUANTIZATIONS`):
- "int8": dynamic int8 linears. Weights int8 per output channel, activations quantized per call (per tensor, uint8)
  by torch's quantized engine (fbgemm / oneDNN behind "x86"). For throughput: encoders, prefill, batched decoding.
- "int8-weight": weight-only int8 (GGUF Q8_0 blocks with our kernels, else one scale per output channel).
- "int4-weight": weight-only int4, a scale and a minimum per group of `group_size` (32 by default) inputs.
- "gguf" (GGUF files only): each tensor keeps the quantization of the file. No fp32 copy of the model is built.

Kernels for the weight-only modes, best first (`_weight_only_kernel`, LEANFORMERS_QUANT_KERNEL forces one):
- "blocks": our C++ kernels (modeling/kernels, built on first use; x86-64 with AVX2 + FMA + F16C and a compiler):
  weights as GGUF's Q4_1 / Q8_0 blocks of 32 in 8-row tiles (BlockLinear, BlockEmbedding), activations quantized
  per call to ~16 bits, one pass over the weight bytes. GGUF Q4_1 / Q8_0 tensors keep the file's bytes, Q4_0 maps
  exactly onto Q4_1, other types are re-quantized (<= 4 bits to Q4_1, wider to Q8_0). Such models also join q/k/v
  and gate/up into one layer each, take fused RMSNorm / rotary ops (one call where the modules take 6-12), and a
  Llama-style block decodes its one new token per row in one op (fused_decode_step).
- "bf16": torch's `_weight_int8pack_mm` / `_weight_int4pack_mm_for_cpu` on bf16 activations: fast only on CPUs
  with AVX512-BF16 / AMX (on AVX2 they are 10-100x slower than fp32: bench/RESULTS.md, /work/shared/perf/kernels.py).
- "dequant": the weight dequantized per call into an fp32 F.linear (correct everywhere, no speed-up); a GGUF file's
  4-bit blocks become int8 rows on the int8 engine's two-pass kernel ("int8x2") instead where that engine exists.
Dynamic int8 needs a quantized engine (fbgemm/x86/onednn/qnnpack); without one, "int8" raises and names the others.

A tied output projection (decoders whose lm_head is the word embedding) becomes one int8 table read by the
embedding lookup and by the head: the table is stored once, as the fp32 one was.

Saving: quantized models are not written by save_pretrained; save the fp32 model (or keep the GGUF file) and
quantize again on load (`from_pretrained(..., quantization=...)`) — quantizing takes well under a second per 100M
parameters and gives the same weights every time.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from leanformers.modeling import kernels
from leanformers.modeling.attention import Attention, apply_rotary
from leanformers.modeling.layers import RMSNorm

logger = logging.getLogger("leanformers")

QUANTIZATIONS = ("int8", "int8-weight", "int4-weight", "gguf")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what _weight_int4pack_mm_for_cpu accepts


def check_quantization(quantization) -> str | None:
    """The mode name, checked: None stays None; anything unknown raises ValueError listing the valid names."""
    if quantization is None or quantization in QUANTIZATIONS:
        return quantization
    raise ValueError(f"unknown quantization {quantization!r}; valid: {', '.join(map(repr, QUANTIZATIONS))} or None")


# ---------------------------------------------------------------- what this CPU runs fast
@functools.cache
def cpu_features() -> dict:
    """{'bf16': AVX512-BF16 or AMX-BF16, 'vnni': AVX512-VNNI or AVX-VNNI, 'engine': quantized engine or None}."""
    flags = kernels.cpu_flags()
    engines = [e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in torch.backends.quantized.supported_engines]
    return {"bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
            "vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
            "engine": engines[0] if engines else None}


def int8_levels() -> int:
    """The largest |q| one int8 operand of the engine may take: 127, or 63 on CPUs without VNNI, where fbgemm's
    u8 x s8 pair products are summed in int16 (2 x 255 x 127 overflows it, 2 x 255 x 63 does not)."""
    return 127 if cpu_features()["vnni"] else 63


def _weight_only_kernel(device: torch.device) -> str:
    """'blocks' (our GGML-block kernels, modeling/kernels: x86-64 with AVX2, FMA, F16C and a C++ compiler), else
    'bf16' (torch's packed kernels, bf16 activations) or 'dequant' (per-call fp32 dequantization).
    LEANFORMERS_QUANT_KERNEL=blocks|bf16|dequant forces one (tests run each on any CPU)."""
    forced = os.environ.get("LEANFORMERS_QUANT_KERNEL")
    if forced in ("bf16", "dequant"):
        return forced
    if device.type == "cpu" and kernels.blocks():
        return "blocks"
    return "bf16" if device.type == "cpu" and cpu_features()["bf16"] else "dequant"


def _int8_weight_kernel(device: torch.device, precise: bool) -> str:
    """int8 weight-only at few rows: 'int8x2' (two passes of the dynamic int8 engine; fp32-exact activations) for
    precise layers and on CPUs without bf16 instructions (AVX2: fbgemm is the fast kernel there), 'bf16' on
    AVX512-BF16/AMX CPUs, 'dequant' without a quantized engine (or when forced)."""
    kernel = _weight_only_kernel(device)
    if kernel == "dequant" and os.environ.get("LEANFORMERS_QUANT_KERNEL") == "dequant":
        return kernel
    if cpu_features()["engine"] and (precise or kernel == "dequant") and device.type == "cpu":
        return "int8x2"
    return kernel


# ---------------------------------------------------------------- the quantized modules
class Int8DynamicLinear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x quantized per call (torch's dynamic quantized linear)."""

    reduce_range = False  # activations keep all 8 bits (the weights give up the bit where one must go: __init__)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        engine = cpu_features()["engine"]
        if engine is None:
            raise RuntimeError("quantization='int8' needs a torch quantized engine (fbgemm / x86 / onednn / qnnpack) "
                               "and this torch build has none; use 'int8-weight' or 'int4-weight'")
        if torch.backends.quantized.engine in (None, "none"):
            torch.backends.quantized.engine = engine
        weight = weight.detach().float()
        # Without VNNI the bit int8_levels() drops is taken from the weights (one scale per output channel) rather
        # than from the activations (one scale per tensor, where BERT's outlier channels make every bit count)
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / int8_levels()
        with warnings.catch_warnings():  # torch 2.13 deprecates quantized tensors; its dynamic linear still takes them
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch.quantize_per_channel(weight, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0,
                                                 torch.qint8)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        # int8 values and scales stay visible (state_dict, inspection); the engine keeps its own packed copy
        self.weight = nn.Parameter(qweight.int_repr(), requires_grad=False)
        self.register_buffer("weight_scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self._packed = torch.ops.quantized.linear_prepack(qweight, self.bias)

    def forward(self, x):
        shape, dtype = x.shape, x.dtype
        x = x.float().reshape(-1, shape[-1]).contiguous()
        columns = self._outlier_columns(x)
        if columns is not None:  # those inputs go through float32; the int8 pass sees them as zeros
            outliers, x = x[:, columns], x.index_fill(1, columns, 0.0)
        if x.shape[0] >= OUTLIER_MIN_ROWS:
            y = self._split_outlier_rows(x)
        else:
            y = torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)
        if columns is not None:
            y.addmm_(outliers, (self.weight[:, columns].float() * self.weight_scale[:, None]).t())
        y = y.view(*shape[:-1], -1)
        return y if dtype == torch.float32 else y.to(dtype)

    def _outlier_columns(self, x):
        """Input channels whose maximum is over OUTLIER_FACTOR_COLUMNS x the median channel's (BERT's LayerNorm
        outputs have a few): with one activation scale per tensor they would take most of the 8 bits, so they are
        multiplied in float32 (with the dequantized int8 weight columns), as LLM.int8() does. None when there are
        none, or too many for that to pay (over 1/16 of the channels)."""
        column_max = x.abs().amax(dim=0)
        columns = (column_max > OUTLIER_FACTOR_COLUMNS * column_max.median()).nonzero().squeeze(1)
        return columns if 0 < columns.numel() <= x.shape[1] // 16 else None

    def _split_outlier_rows(self, x):
        """The engine quantizes activations per tensor, so one token with huge activations (BERT's [CLS]/[SEP]
        rows reach 10-50x the others) would coarsen every other row's 8 bits. Rows above OUTLIER_FACTOR x the
        median row maximum get a pass (and a scale) of their own."""
        row_max = x.abs().amax(dim=1)
        outliers = row_max > OUTLIER_FACTOR * row_max.median()
        count = int(outliers.sum())
        if count == 0 or count == x.shape[0]:
            return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)
        index = outliers.nonzero().squeeze(1)
        keep = (~outliers).nonzero().squeeze(1)
        y = torch.empty(x.shape[0], self.out_features)
        y[keep] = torch.ops.quantized.linear_dynamic(x[keep], self._packed, self.reduce_range)
        y[index] = torch.ops.quantized.linear_dynamic(x[index], self._packed, self.reduce_range)
        return y

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 dynamic"


# up to this many rows torch's weight-only kernels beat dequantize + MKL (measured: the int8 one slows down ~linearly
# with rows, the int4 one stays at or under fp32 up to ~64 rows)
GEMV_ROWS, INT4_KERNEL_ROWS = 4, 64
OUTLIER_FACTOR, OUTLIER_MIN_ROWS = 2.0, 8  # dynamic int8: rows this far above the median get their own scale
OUTLIER_FACTOR_COLUMNS = 6.0  # dynamic int8: input channels this far above the median channel go through float32


class Int8WeightLinear(nn.Module):
    """Weight-only int8: W = q * scale (one scale per output channel); activations stay float.

    Up to GEMV_ROWS rows (decoding) it runs torch's `_weight_int8pack_mm` on bf16 activations ("bf16" kernel), or,
    for a layer marked `precise` (the LM head, whose close logits bf16 outputs would round into ties), two int8
    passes of the dynamic engine over the activation and its residual, accumulated in int32 ("int8x2": activations
    exact to ~16 bits, fp32 output). More rows (prefill, batches) dequantize the weight into one fp32 MKL GEMM."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
                 precise: bool = False):
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.weight = qweight if isinstance(qweight, nn.Parameter) else nn.Parameter(qweight, requires_grad=False)
        self.register_buffer("weight_scale", scale.float())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self.kernel = _int8_weight_kernel(qweight.device, precise)
        self._scale_bf16 = self._packed = None
        if self.kernel == "int8x2":
            self._pack()

    def _pack(self):
        """The dynamic engine's own packed copy of the int8 weight (made once; the int8x2 kernel reads it)."""
        zeros = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.13 deprecates quantized tensors; its int8 linears still take them
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch._make_per_channel_quantized_tensor(self.weight.detach(), self.weight_scale.double(),
                                                               zeros, 0)
        self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self._levels = int8_levels()

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int8WeightLinear:
        qweight, scale = quantize_rows_int8(weight)
        return cls(qweight, scale, bias)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight (out_features, in_features) this layer computes with."""
        return self.weight.float() * self.weight_scale[:, None]

    def forward(self, x):
        shape = x.shape
        rows = x.numel() // shape[-1] if shape[-1] else 0
        if self.kernel == "dequant" or rows > GEMV_ROWS:
            y = F.linear(x, self.dequantize().to(x.dtype))
        elif self.kernel == "int8x2":
            y = self._two_pass(x.reshape(rows, shape[-1]).float()).to(x.dtype).view(*shape[:-1], -1)
        else:
            if self._scale_bf16 is None:
                self._scale_bf16 = self.weight_scale.to(torch.bfloat16)
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(rows, shape[-1]).to(torch.bfloat16), self.weight,
                                                   self._scale_bf16).to(x.dtype).view(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _two_pass(self, x):  # x (rows, in) float32 -> (rows, out) float32
        levels = self._levels  # the weights keep 8 bits here, so the activations give up the bit without VNNI
        y = None
        for _ in range(2):  # x = q1 * s1 + residual; the residual's own 7-8 bits give the next bits of x
            scale = float(x.abs().max()) / levels or 1.0
            part = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, scale, levels + 1,
                                                                                     self._packed)
            y = part if y is None else y + part
            x = x - torch.round(x / scale).clamp_(-levels - 1, levels) * scale
        return y

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights ({self.kernel})"


class Int4WeightLinear(nn.Module):
    """Weight-only int4 with a (scale, zero) per group of inputs: W = (q - 8) * scale + zero, q in 0..15.

    Storage: torch's CPU int4 pack (N, K/2 bytes, a blocked layout) and the bf16 `scales_and_zeros`. Up to
    INT4_KERNEL_ROWS rows run `_weight_int4pack_mm_for_cpu` on bf16 activations; more rows (and CPUs without bf16
    instructions) dequantize the weight into one fp32 MKL GEMM."""

    def __init__(self, q: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int,
                 bias: torch.Tensor | None = None):
        super().__init__()
        # q (N, K) int32 in 0..15; scales_and_zeros (K / group, N, 2) float
        self.out_features, self.in_features = q.shape
        self.group_size = group_size
        self.kernel = _weight_only_kernel(q.device)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 2)
        self.weight = nn.Parameter(packed, requires_grad=False)
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(torch.bfloat16).contiguous())

        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, group_size: int = 32):
        q, scales_and_zeros = quantize_groups_int4(weight, group_size)
        return cls(q, scales_and_zeros, group_size, bias)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight (out_features, in_features) this layer computes with."""
        packed = self.weight
        nibbles = torch.stack([packed & 15, packed >> 4], dim=-1).view(-1)
        q = nibbles[_int4_unpack_index(self.out_features, self.in_features)].view(self.out_features, -1).float()
        sz = self.scales_and_zeros.float()
        scale, zero = (sz[..., i].t().repeat_interleave(self.group_size, 1) for i in (0, 1))
        return (q - 8) * scale + zero

    def forward(self, x):
        shape = x.shape
        rows = x.numel() // shape[-1] if shape[-1] else 0
        if self.kernel == "dequant" or rows > INT4_KERNEL_ROWS:
            y = F.linear(x, self.dequantize().to(x.dtype))
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(rows, shape[-1]).to(torch.bfloat16), self.weight,
                                                           self.group_size, self.scales_and_zeros)
            y = y.to(x.dtype).view(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4 weights, "
                f"group {self.group_size} ({self.kernel})")


@functools.lru_cache(maxsize=16)
def _int4_unpack_index(out_features: int, in_features: int) -> torch.Tensor:
    """For torch's blocked CPU int4 pack: index into its nibbles (low, high per byte) giving the (N, K) order.
    Found by packing the bits of each element's own position, one bit per call, so it follows torch's layout
    whatever it is."""
    count = out_features * in_features
    position = torch.arange(count, dtype=torch.int64).view(out_features, in_features)
    source = torch.zeros(count, dtype=torch.int64)
    for bit in range(max(count - 1, 1).bit_length()):
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(((position >> bit) & 1).to(torch.int32), 2)
        source |= torch.stack([packed & 15, packed >> 4], dim=-1).view(-1).to(torch.int64) << bit
    index = torch.empty(count, dtype=torch.int32)
    index[source] = torch.arange(count, dtype=torch.int32)
    return index


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 with one scale per row; the rows looked up are dequantized to float32.
    A tied head reads the same `weight` and `weight_scale` through an Int8WeightLinear."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim = qweight.shape
        self.weight = qweight if isinstance(qweight, nn.Parameter) else nn.Parameter(qweight, requires_grad=False)
        self.register_buffer("weight_scale", scale.float())

    def forward(self, input_ids):
        return self.weight[input_ids].float() * self.weight_scale[input_ids].unsqueeze(-1)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"


# ---------------------------------------------------------------- GGML blocks (the "blocks" kernel)
BLOCK_BYTES = {"Q4_1": 20, "Q8_0": 34}  # GGUF, per 32 weights: float16 d (and m), then the codes


def q4_1_blocks(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """q (N, K) in 0..15, d and m (N, K/32) -> GGUF Q4_1 bytes uint8 (N, K/32 * 20): per block float16 d, float16 m,
    then 16 bytes whose byte j holds q[j] (low nibble) and q[j + 16] (high). W = d * q + m."""
    n = q.shape[0]
    codes = q.to(torch.uint8).view(n, -1, 32)
    nibbles = codes[..., :16] | (codes[..., 16:] << 4)
    scales = [t.to(torch.float16).contiguous().view(torch.uint8).view(n, -1, 2) for t in (d, m)]
    return torch.cat(scales + [nibbles], dim=-1).reshape(n, -1).contiguous()


def q8_0_blocks(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """q int8 (N, K), d (N, K/32) -> GGUF Q8_0 bytes uint8 (N, K/32 * 34): per block float16 d, then 32 int8."""
    n = q.shape[0]
    scale = d.to(torch.float16).contiguous().view(torch.uint8).view(n, -1, 2)
    return torch.cat([scale, q.contiguous().view(torch.uint8).view(n, -1, 32)], dim=-1).reshape(n, -1).contiguous()


def dequantize_blocks(blocks: torch.Tensor, block_type: str) -> torch.Tensor:
    """GGUF Q4_1 / Q8_0 bytes (N, K/32 * bytes) -> float32 (N, K)."""
    n = blocks.shape[0]
    b = blocks.view(n, -1, BLOCK_BYTES[block_type])
    d = b[..., 0:2].contiguous().view(torch.float16).float()
    if block_type == "Q8_0":
        return (b[..., 2:].contiguous().view(torch.int8).float() * d).view(n, -1)
    m = b[..., 2:4].contiguous().view(torch.float16).float()
    nibbles = b[..., 4:]
    q = torch.cat([nibbles & 15, nibbles >> 4], dim=-1).float()
    return (q * d + m).view(n, -1)


def tile_blocks(blocks: torch.Tensor, block_type: str) -> torch.Tensor:
    """GGUF rows (N, K/32 * bytes) -> the kernels' 8-row tiles uint8 (ceil(N/8), K/32 * 8 * bytes), rows padded with
    zeros to a multiple of 8: per tile and block the eight float16 d (Q4_1: and the eight m), then the codes with
    four consecutive codes of each row side by side (modeling/kernels/blocks.cpp). Same bytes, another order."""
    size = BLOCK_BYTES[block_type]
    n, width = blocks.shape
    pad = -n % 8
    if pad:
        blocks = torch.cat([blocks, blocks.new_zeros(pad, width)])
    b = blocks.view(-1, 8, width // size, size).transpose(1, 2)  # (T, nb, 8 rows, bytes)
    scales = 4 if block_type == "Q4_1" else 2
    heads = [b[..., i:i + 2].reshape(*b.shape[:2], 16) for i in range(0, scales, 2)]
    # Q4_1: byte 4r+i of vector j is row r's byte 4j+i (codes 4j+i and 4j+i+16); Q8_0: row r's code 4j+i
    codes = b[..., scales:].reshape(*b.shape[:3], -1, 4).transpose(2, 3).reshape(*b.shape[:2], -1)
    return torch.cat(heads + [codes], dim=-1).reshape(b.shape[0], -1).contiguous()


def untile_blocks(tiles: torch.Tensor, block_type: str, rows: torch.Tensor | int) -> torch.Tensor:
    """tile_blocks' inverse: the GGUF rows `rows` (an index tensor, or the first `rows` rows) of 8-row tiles."""
    size = BLOCK_BYTES[block_type]
    scales = 4 if block_type == "Q4_1" else 2
    if isinstance(rows, int):  # the whole table: views and one copy
        t = tiles.view(tiles.shape[0], -1, 8 * size)
        parts = [t[..., 16 * i:16 * i + 16].reshape(*t.shape[:2], 8, 2) for i in range(scales // 2)]
        codes = t[..., 8 * scales:].reshape(*t.shape[:2], -1, 8, 4).transpose(2, 3).reshape(*t.shape[:2], 8, -1)
        return torch.cat(parts + [codes], dim=-1).transpose(1, 2).reshape(-1, tiles.shape[1] // 8)[:rows]
    index = rows.reshape(-1)
    t = tiles[index // 8].view(len(index), -1, 8 * size)  # (n, nb, tile bytes)
    lane, n = index % 8, torch.arange(len(index))
    parts = [t[..., 16 * i:16 * i + 16].view(len(index), -1, 8, 2)[n, :, lane] for i in range(scales // 2)]
    codes = t[..., 8 * scales:].view(len(index), -1, (size - scales) // 4, 8, 4)[n, :, :, lane]
    return torch.cat(parts + [codes.reshape(len(index), -1, size - scales)], dim=-1).reshape(len(index), -1)


def quantize_blocks(weight: torch.Tensor, block_type: str, group_size: int = 32, chunk: int = 4096) -> torch.Tensor:
    """float (N, K) -> GGUF blocks: Q4_1 (min/max per group of `group_size` inputs, the group's float16 d and m
    repeated over its blocks of 32) or Q8_0 (symmetric per block of 32). The codes are rounded against the float16
    scales stored, so W = d * q (+ m) holds for what is kept. `chunk` rows at a time: no float copy of a table."""
    n, k = weight.shape
    parts = []
    for start in range(0, n, chunk):
        rows = weight[start:start + chunk].detach().float()
        if block_type == "Q8_0":
            blocks = rows.view(rows.shape[0], -1, 32)
            d = (blocks.abs().amax(-1) / 127).to(torch.float16).float()
            q = torch.round(blocks / torch.where(d > 0, d, 1)[..., None]).clamp_(-127, 127).to(torch.int8)
            parts.append(q8_0_blocks(q.view(rows.shape[0], k), d))
            continue
        groups = rows.view(rows.shape[0], -1, group_size)
        low, high = groups.amin(-1), groups.amax(-1)
        d = ((high - low) / 15).to(torch.float16).float()
        m = low.to(torch.float16).float()
        q = torch.round((groups - m[..., None]) / torch.where(d > 0, d, 1)[..., None]).clamp_(0, 15)
        per_block = group_size // 32
        parts.append(q4_1_blocks(q.view(rows.shape[0], k), d.repeat_interleave(per_block, 1),
                                 m.repeat_interleave(per_block, 1)))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


class BlockLinear(nn.Module):
    """y = x W^T + b with W in GGUF blocks of 32 inputs, as llama.cpp holds them: "Q4_1" (4-bit, float16 scale and
    minimum: int4-weight and GGUF Q4_0 / Q4_1 files) or "Q8_0" (int8, float16 scale: int8-weight and GGUF Q8_0).
    Built from GGUF rows (a file's own bytes where it has them); `weight` holds the same bytes as 8-row tiles
    (tile_blocks), uint8 (ceil(out_features / 8), in_features / 32 * 8 * block bytes). Every call runs
    torch.ops.leanformers.q4_linear / q8_linear (modeling/kernels: activations as two int8 blocks, ~16 bits, one
    pass over the weight bytes). Each row's result depends on that row only, so a request gives the same numbers
    alone or in any batch; a prompt of a few hundred tokens costs about what dequantize + MKL would (measured)."""

    def __init__(self, blocks: torch.Tensor, block_type: str, bias: torch.Tensor | None = None, *,
                 tiled: bool = False, out_features: int | None = None):
        super().__init__()
        self.block_type = block_type
        self.out_features = out_features if tiled else blocks.shape[0]
        per_row = blocks.shape[1] // 8 if tiled else blocks.shape[1]
        self.in_features = per_row // BLOCK_BYTES[block_type] * 32
        tiles = blocks if tiled else tile_blocks(blocks, block_type)
        self.weight = tiles if isinstance(tiles, nn.Parameter) else nn.Parameter(tiles, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        ops = torch.ops.leanformers
        self._op, self._dequantize = (ops.q4_linear, ops.q4_dequantize) if block_type == "Q4_1" else \
            (ops.q8_linear, ops.q8_dequantize)

    @classmethod
    def from_float(cls, weight: torch.Tensor, block_type: str, bias: torch.Tensor | None = None,
                   group_size: int = 32) -> BlockLinear:
        """Quantize a float (out, in) weight into `block_type` blocks (quantize_blocks)."""
        return cls(quantize_blocks(weight, block_type, group_size), block_type, bias)

    def blocks(self) -> torch.Tensor:
        """The GGUF rows (out_features, in_features / 32 * block bytes) this layer holds."""
        return untile_blocks(self.weight, self.block_type, self.out_features)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight (out_features, in_features) this layer computes with."""
        return self._dequantize(self.weight, self.out_features)

    def forward(self, x):
        y = self._op(x, self.weight, self.out_features, self.bias)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.block_type} blocks"


def join_block_linears(layers: list[BlockLinear]) -> BlockLinear:
    """One BlockLinear computing the layers' outputs side by side (rows concatenated): one call, one activation
    quantization and one pass over x instead of several. The layers share in_features and block type."""
    block_type = layers[0].block_type
    if any(layer.bias is not None for layer in layers):
        bias = torch.cat([layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
                          for layer in layers])
    else:
        bias = None
    if all(layer.out_features % 8 == 0 for layer in layers):  # whole tiles: concatenate them
        tiles = torch.cat([layer.weight.detach() for layer in layers])
        rows = sum(layer.out_features for layer in layers)
        return BlockLinear(tiles, block_type, bias, tiled=True, out_features=rows)
    return BlockLinear(torch.cat([layer.blocks() for layer in layers]), block_type, bias)


def join_projections(model: nn.Module) -> list[str]:
    """Join each self-attention's q/k/v and each gated MLP's gate/up when they are BlockLinear layers of one block
    type (the modules' forward takes the joined `qkv` / `gate_up`). Returns the names of the joined modules."""
    from .layers import MLP

    joined = []
    for name, module in list(model.named_modules()):
        parts = None
        if type(module) is Attention and not name.endswith("cross_attention") and not hasattr(module, "qkv"):
            parts, target = ("q", "k", "v"), "qkv"
        elif isinstance(module, MLP) and module.gate is not None and module.gate_up is None:
            parts, target = ("gate", "up"), "gate_up"
        if parts is None:
            continue
        layers = [getattr(module, part) for part in parts]
        if not all(isinstance(layer, BlockLinear) for layer in layers) or \
                len({(layer.block_type, layer.in_features) for layer in layers}) != 1:
            continue
        for part in parts:
            delattr(module, part)
            if target == "gate_up":
                setattr(module, part, None)
        setattr(module, target, join_block_linears(layers))
        joined.append(name)
    return joined


class FusedRMSNorm(RMSNorm):
    """RMSNorm as one op (torch.ops.leanformers.rms_norm, the same float32 arithmetic) at inference in float32."""

    def forward(self, x):
        if x.dtype == torch.float32 and not torch.is_grad_enabled():
            return torch.ops.leanformers.rms_norm(x, self.weight, self.eps)
        return super().forward(x)


def fused_rotary(x, cos, sin):
    """apply_rotary as one op (torch.ops.leanformers.rotary, the same float32 arithmetic) where it applies: full
    rotary, float32, inference."""
    if cos.shape[-1] == x.shape[-1] and x.dtype == torch.float32 and not torch.is_grad_enabled():
        return torch.ops.leanformers.rotary(x, cos, sin)
    return apply_rotary(x, cos, sin)


def use_fused_decode_ops(model: nn.Module):
    """The block-quantized model's RMSNorms and self-attention rotations take the block kernels' fused ops: at one
    row per decoding step their 6-12 small torch ops cost more than the arithmetic. Llama-style blocks whose layers
    are all block layers also decode a token in one op (fused_decode_step)."""
    from .layers import MLP
    from .transformer import Block

    for module in model.modules():
        if type(module) is RMSNorm:
            module.__class__ = FusedRMSNorm
        elif type(module) is Attention:
            module.rotate = fused_rotary
    for module in model.modules():
        if isinstance(module, Block):
            attention, mlp = module.attention, module.mlp
            if (module.pre_norm and not module.parallel and module.cross_attention is None
                    and module.attention_post_norm is None and module.mlp_post_norm is None
                    and type(module.attention_norm) is FusedRMSNorm and type(module.mlp_norm) is FusedRMSNorm
                    and type(attention) is Attention and attention.q_norm is None and attention.softcap is None
                    and isinstance(getattr(attention, "qkv", None), BlockLinear)
                    and isinstance(attention.o, BlockLinear)
                    and type(mlp) is MLP and isinstance(mlp.gate_up, BlockLinear) and isinstance(mlp.down, BlockLinear)
                    and mlp.act is F.silu):
                module.fused_decode = fused_decode_step


def fused_decode_step(block, x, bias, cache, layer_idx: int, rotary) -> torch.Tensor | None:
    """One decoding step (x (B, 1, hidden), one new token per row) of a Llama-style block through
    torch.ops.leanformers.decode_layer: the same computation as the modules' path, the new keys and values written
    into `cache` (through its decode_slot). None (the block runs its modules) for partial rotary tables, other
    caches and other dtypes."""
    attention, mlp = block.attention, block.mlp
    cos, sin = rotary
    slot = getattr(cache, "decode_slot", None)  # KVCache and the server's SlotCache have it
    if slot is None or cos.shape[-1] != attention.head_dim or x.dtype != torch.float32:
        return None  # the modules' path
    like = x.new_empty(x.shape[0], attention.num_kv_heads, 1, attention.head_dim)
    keys, values, position = slot(layer_idx, like)
    return torch.ops.leanformers.decode_layer(
        x.contiguous(), block.attention_norm.weight, block.attention_norm.eps, attention.qkv.weight,
        attention.qkv.out_features, attention.qkv.bias, cos, sin, keys, values, position, attention.num_heads,
        attention.num_kv_heads, attention.scale, bias, attention.o.weight, attention.o.out_features, attention.o.bias,
        block.mlp_norm.weight, block.mlp_norm.eps, mlp.gate_up.weight, mlp.gate_up.out_features, mlp.gate_up.bias,
        mlp.down.weight, mlp.down.out_features, mlp.down.bias)


class BlockEmbedding(nn.Module):
    """An embedding table in GGUF Q8_0 blocks, held as the kernels' 8-row tiles; the rows looked up are dequantized
    to float32. A tied head is a BlockLinear over the same `weight`."""

    def __init__(self, blocks: torch.Tensor):
        super().__init__()
        self.num_embeddings = blocks.shape[0]
        self.embedding_dim = blocks.shape[1] // BLOCK_BYTES["Q8_0"] * 32
        self.weight = nn.Parameter(tile_blocks(blocks, "Q8_0"), requires_grad=False)

    def forward(self, input_ids):
        rows = dequantize_blocks(untile_blocks(self.weight, "Q8_0", input_ids), "Q8_0")
        return rows.view(*input_ids.shape, self.embedding_dim)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, Q8_0 blocks"


# ---------------------------------------------------------------- quantizing float tensors
def quantize_rows_int8(weight: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: weight (N, K) -> (q int8 (N, K), scale float32 (N,)) with weight ~ q * scale.
    Rows are done `chunk` at a time so a float copy of a big table is never made."""
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], chunk):
        rows = weight[start:start + chunk].detach().float()
        s = rows.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        q[start:start + chunk] = torch.round(rows / s[:, None]).clamp_(-127, 127).to(torch.int8)
        scale[start:start + chunk] = s
    return q, scale


def quantize_groups_int4(weight: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group of `group_size` inputs (min/max): weight (N, K) -> (q int32 (N, K) in 0..15,
    scales_and_zeros float32 (K / group, N, 2)) with weight ~ (q - 8) * scale + zero."""
    n, k = weight.shape
    groups = weight.detach().float().reshape(n, k // group_size, group_size)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)
    scale = ((high - low) / 15).clamp(min=1e-8)
    q = torch.round((groups - low[..., None]) / scale[..., None]).clamp_(0, 15).to(torch.int32).reshape(n, k)
    zero = low + 8 * scale
    return q, torch.stack([scale.t(), zero.t()], dim=-1).contiguous()


def int4_problem(out_features: int, in_features: int, group_size: int, kernel: str) -> str | None:
    """Why an (out, in) weight cannot take int4 with this group, or None when it can."""
    if in_features % group_size:
        return f"in_features={in_features} is not divisible by the int4 group size {group_size}"
    if out_features % 16 and kernel != "blocks":
        return f"out_features={out_features} is not divisible by 16 (torch's int4 CPU packing)"
    return None


# ---------------------------------------------------------------- quantizing a model
def quantize(model: nn.Module, quantization: str, group_size: int = 32, skip: tuple[str, ...] = ()) -> dict:
    """Replace the model's nn.Linear layers (and a tied head's embedding) in place by their quantized form.

    Returns the report also kept as `model.quantization_report`: mode, kernel, the quantized layer names, and the
    layers kept in float32 with the reason (int4 with a dimension its kernel cannot take; names in `skip`)."""
    quantization = check_quantization(quantization)
    if quantization is None:
        raise ValueError("quantize() needs a mode: " + ", ".join(map(repr, QUANTIZATIONS[:3])))
    if quantization == "gguf":
        raise ValueError("quantization='gguf' keeps a GGUF file's own quantization and applies to "
                         "from_pretrained(..., gguf_file=...) only; to quantize a loaded model use "
                         + ", ".join(map(repr, QUANTIZATIONS[:3])))
    if getattr(model, "quantization_report", None):
        raise ValueError(f"the model is already quantized ({model.quantization_report['mode']}); load it again "
                         "in float32 to quantize it another way")
    if quantization == "int4-weight" and group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group_size must be one of {INT4_GROUP_SIZES} for int4-weight, got {group_size}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        raise RuntimeError(f"quantization={quantization!r} runs on torch's CPU kernels; the model is on {device}. "
                           "Quantize on the CPU (model.to('cpu')) or keep float weights on this device")
    kernel = "dynamic" if quantization == "int8" else _weight_only_kernel(device)
    report = {"mode": quantization, "kernel": kernel, "group_size": group_size if quantization == "int4-weight"
              else None, "quantized": [], "kept_float": {}}
    tied_head = _tied_head(model) if quantization != "int8" else None
    if tied_head is not None:
        _quantize_tied(model, tied_head, report)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name == tied_head:
            continue
        if any(name == s or name.startswith(s + ".") for s in skip):
            report["kept_float"][name] = "skipped as asked"
            continue
        weight, bias = module.weight, module.bias
        blocks = kernel == "blocks" and weight.shape[1] % 32 == 0
        if quantization == "int8":
            new = Int8DynamicLinear(weight, bias)
        elif quantization == "int8-weight":
            new = BlockLinear.from_float(weight, "Q8_0", bias) if blocks else Int8WeightLinear.from_float(weight, bias)
        else:
            problem = int4_problem(weight.shape[0], weight.shape[1], group_size, kernel)
            if problem:
                report["kept_float"][name] = problem
                continue
            new = BlockLinear.from_float(weight, "Q4_1", bias, group_size) if blocks else \
                Int4WeightLinear.from_float(weight, bias, group_size)
        _set_module(model, name, new)
        report["quantized"].append(name)
    return _finish(model, report)


def _finish(model: nn.Module, report: dict) -> dict:
    if report["kernel"] == "blocks":
        report["joined"] = join_projections(model)
        use_fused_decode_ops(model)
    if report["kept_float"]:
        logger.warning("quantization=%r kept %d layer(s) in float32: %s", report["mode"], len(report["kept_float"]),
                       "; ".join(f"{k}: {v}" for k, v in report["kept_float"].items()))
    if report.get("int4_as_int8"):
        logger.info("quantization='gguf': this CPU has no AVX512-BF16/AMX, on which torch's int4 kernel is slower than "
                    "float32; the 4-bit blocks are held as int8 rows on the int8 engine instead")
    elif report["kernel"] == "dequant" and report["mode"] in ("int4-weight", "gguf"):
        logger.warning("quantization=%r: this CPU has no AVX512-BF16/AMX, so torch's int4 kernel would be slower "
                       "than float32; int4 weights are dequantized per call instead (same numbers, less memory, no "
                       "speed-up). 'int8' and 'int8-weight' use the int8 engine and are the fast modes here",
                       report["mode"])
    model.quantization_report = report
    return report


def _tied_head(model) -> str | None:
    """Module name of an output projection tied to the word embedding, if any."""
    ties = model.tied_weights() if hasattr(model, "tied_weights") else {}
    for target, source in ties.items():
        module_name = target.rpartition(".")[0]
        if isinstance(model.get_submodule(module_name), nn.Linear) and \
                isinstance(model.get_submodule(source.rpartition(".")[0]), nn.Embedding):
            return module_name
    return None


def _quantize_tied(model, head_name: str, report: dict):
    """Head and embedding share one int8 table: Q8_0 blocks with the block kernels, else a scale per vocabulary row."""
    head = model.get_submodule(head_name)
    embedding_name = model.tied_weights()[head_name + ".weight"].rpartition(".")[0]
    if report["kernel"] == "blocks" and head.weight.shape[1] % 32 == 0:
        place_tied_blocks(model, head_name, embedding_name, quantize_blocks(head.weight, "Q8_0"), head.bias)
    else:
        qweight, scale = quantize_rows_int8(head.weight)
        place_tied_int8(model, head_name, embedding_name, qweight, scale, head.bias)
    report["quantized"] += [embedding_name, head_name]


def place_tied_blocks(model, head_name: str, embedding_name: str, blocks: torch.Tensor, bias=None):
    """Install one Q8_0 block table as both the embedding and the head it is tied to."""
    embedding = BlockEmbedding(blocks)
    _set_module(model, embedding_name, embedding)
    _set_module(model, head_name, BlockLinear(embedding.weight, "Q8_0", bias, tiled=True,
                                              out_features=embedding.num_embeddings))


def place_tied_int8(model, head_name: str, embedding_name: str, qweight, scale, bias=None):
    """Install one int8 table as both the embedding and the head it is tied to."""
    table = nn.Parameter(qweight, requires_grad=False)
    embedding = Int8Embedding(table, scale)
    head = Int8WeightLinear(table, embedding.weight_scale, bias, precise=True)
    head.weight_scale = embedding.weight_scale  # one scale tensor too
    _set_module(model, embedding_name, embedding)
    _set_module(model, head_name, head)


def _set_module(model: nn.Module, name: str, module: nn.Module):
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


# ---------------------------------------------------------------- GGUF tensors kept quantized
def place_gguf(model: nn.Module, weights: dict) -> dict:
    """Install GGUF block-quantized weights (our parameter name -> gguf.GGUFWeight) into a model built on the meta
    device: Q4_0/Q4_1 as int4 (group 32, bit for bit), other types of <= 4 bits re-quantized to int4, wider types
    to int8 per output channel, an embedding (and the head tied to it) to int8 rows. On CPUs without bf16
    instructions (AVX2), where no int4 kernel is fast, the 4-bit types become int8 rows too (the int8 engine's
    two-pass kernel); LEANFORMERS_QUANT_KERNEL=bf16|dequant keeps them int4. Returns the report."""
    kernel = _weight_only_kernel(torch.device("cpu"))
    if kernel == "blocks":
        return _place_gguf_blocks(model, weights)
    # without bf16 instructions (AVX2) torch's int4 kernel is ~10x slower than float32 and the dequantizing fallback
    # too: 4-bit blocks then become int8 rows on the int8 engine (twice the bytes of int4, a quarter of float32)
    as_int8 = kernel == "dequant" and "LEANFORMERS_QUANT_KERNEL" not in os.environ and cpu_features()["engine"]
    report = {"mode": "gguf", "kernel": "int8x2" if as_int8 else kernel, "group_size": 32, "quantized": [],
              "kept_float": {}, "types": {}, "int4_as_int8": bool(as_int8)}
    tied = _tied_modules(model)
    for param_name, weight in weights.items():
        name = param_name.rpartition(".")[0]
        module = model.get_submodule(name)
        report["types"][name] = weight.type_name
        if isinstance(module, nn.Embedding):
            qweight, scale = _gguf_int8_rows(weight)
            heads = [h for h, e in tied.items() if e == name]
            if heads:
                place_tied_int8(model, heads[0], name, qweight, scale, model.get_submodule(heads[0]).bias)
                report["quantized"] += [name, heads[0]]
            else:
                _set_module(model, name, Int8Embedding(qweight, scale))
                report["quantized"].append(name)
            continue
        if not isinstance(module, nn.Linear):
            raise TypeError(f"GGUF tensor {weight.name} ({weight.type_name}) maps to {name}, a "
                             f"{type(module).__name__}; only linear and embedding weights can stay quantized")
        if name in tied and isinstance(model.get_submodule(tied[name]), Int8Embedding):
            continue  # its embedding already installed the shared table
        bias = module.bias if module.bias is not None and not module.bias.is_meta else None
        problem = int4_problem(*weight.rows, 32, kernel) if weight.bits <= 4 else "wider than 4 bits"
        if problem is None and not as_int8:
            _set_module(model, name, _gguf_int4(weight, bias))
        else:
            if weight.bits <= 4 and problem is not None:
                report["kept_float"][name] = f"{problem}: int8 instead of int4"
            _set_module(model, name, Int8WeightLinear(*_gguf_int8_rows(weight), bias))
        report["quantized"].append(name)
    return report


def _tied_modules(model: nn.Module) -> dict:
    """Tied module names: output projection -> the embedding whose weight it reads."""
    ties = model.tied_weights() if hasattr(model, "tied_weights") else {}
    return {target.rpartition(".")[0]: source.rpartition(".")[0] for target, source in ties.items()}


def _place_gguf_blocks(model: nn.Module, weights: dict) -> dict:
    """place_gguf for the block kernels: Q4_1 and Q8_0 tensors keep the file's bytes, Q4_0 becomes Q4_1 exactly,
    other types are dequantized (a chunk of rows at a time) and re-quantized to Q4_1 (<= 4 bits) or Q8_0; an
    embedding becomes a Q8_0 table (shared with a tied head)."""
    report = {"mode": "gguf", "kernel": "blocks", "group_size": 32, "quantized": [], "kept_float": {}, "types": {},
              "int4_as_int8": False}
    tied = _tied_modules(model)
    for param_name, weight in weights.items():
        name = param_name.rpartition(".")[0]
        module = model.get_submodule(name)
        report["types"][name] = weight.type_name
        embedding = isinstance(module, nn.Embedding)
        if not embedding and not isinstance(module, nn.Linear):
            raise TypeError(f"GGUF tensor {weight.name} ({weight.type_name}) maps to {name}, a "
                             f"{type(module).__name__}; only linear and embedding weights can stay quantized")
        if name in tied and isinstance(model.get_submodule(tied[name]), BlockEmbedding):
            continue  # its embedding already installed the shared table
        block_type, blocks = weight.ggml_blocks() or (None, None)
        wanted = "Q8_0" if embedding or weight.bits > 4 else "Q4_1"
        if block_type != wanted:
            blocks = _gguf_requantized(weight, wanted)
        if embedding:
            heads = [h for h, e in tied.items() if e == name]
            if heads:
                place_tied_blocks(model, heads[0], name, blocks, model.get_submodule(heads[0]).bias)
                report["quantized"] += [name, heads[0]]
            else:
                _set_module(model, name, BlockEmbedding(blocks))
                report["quantized"].append(name)
            continue
        bias = module.bias if module.bias is not None and not module.bias.is_meta else None
        _set_module(model, name, BlockLinear(blocks, wanted, bias))
        report["quantized"].append(name)
    return report


def _gguf_float_chunks(weight, chunk: int = 4096):
    """Any GGUF type as float32 torch rows, `chunk` rows at a time (a table never exists in float32 whole)."""
    if weight.heads:  # permuted rows are undone over the whole (small) tensor
        chunk = weight.rows[0]
    for start in range(0, weight.rows[0], chunk):
        yield torch.from_numpy(weight.dequantize_rows(start, min(start + chunk, weight.rows[0])))


def _gguf_requantized(weight, block_type: str) -> torch.Tensor:
    """Any GGUF type -> Q4_1 / Q8_0 blocks, dequantized a chunk of rows at a time."""
    return torch.cat([quantize_blocks(rows, block_type) for rows in _gguf_float_chunks(weight)])


def _gguf_int4(weight, bias) -> Int4WeightLinear:
    if weight.type_name in ("Q4_0", "Q4_1"):
        q, scale, zero = weight.int4_blocks()
        return Int4WeightLinear(q, torch.stack([scale.t(), zero.t()], dim=-1), 32, bias)
    return Int4WeightLinear.from_float(torch.from_numpy(weight.dequantize_rows(0, weight.rows[0])), bias, 32)


def _gguf_int8_rows(weight) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 per row from any GGUF type, dequantized a chunk of rows at a time."""
    parts = [quantize_rows_int8(rows) for rows in _gguf_float_chunks(weight)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
