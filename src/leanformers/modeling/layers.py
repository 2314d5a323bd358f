"""The shared building blocks: activations, norms, embeddings, MLP. Every architecture is assembled from these."""
from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from .spec import dropout_rate


def _gelu_new(x):  # the tanh approximation GPT-2 and ALBERT were trained with
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


def dropout(x, p: float, training: bool):
    """F.dropout, and nothing at all (not even a call) at inference or with p == 0."""
    return F.dropout(x, p, True) if training and p > 0 else x


class RMSNorm(nn.Module):
    """T5 / Llama norm: scale by the root mean square, no mean subtraction, no bias; computed in float32."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class OffsetRMSNorm(nn.Module):
    """Gemma's RMSNorm: the checkpoint stores w - 1 (zeros = identity), applied as (1 + w) in float32, then cast."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size))
        self.eps = eps

    def forward(self, x):
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)


def norm_kind(spec, config) -> str:
    """The spec's norm kind: fixed, or chosen by the config (ModernBERT: LayerNorm with or without bias)."""
    return spec.norm(config) if callable(spec.norm) else spec.norm


def norm(kind: str, size: int, eps: float) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(size, eps=eps)
    if kind == "layer_no_bias":
        return nn.LayerNorm(size, eps=eps, bias=False)
    if kind == "rms":
        return RMSNorm(size, eps)
    if kind == "rms_offset":
        return OffsetRMSNorm(size, eps)
    raise ValueError(f"unknown norm kind {kind!r}")


def sinusoidal_table(num_positions: int, dim: int, interleaved: bool = False) -> torch.Tensor:
    """(num_positions, dim) fixed position table: sin in the first half, cos in the second (fairseq/Marian layout),
    or sin/cos interleaved on even/odd columns (`interleaved`, the original Transformer / DistilBERT layout)."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * -(math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    if interleaved:
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    else:
        half = (dim + 1) // 2
        table[:, :half] = torch.sin(position * div)
        table[:, half:] = torch.cos(position * div)[:, : dim - half]
    return table.float()


def fairseq_sinusoidal_table(num_positions: int, dim: int, padding_idx: int | None) -> torch.Tensor:
    """(num_positions, dim) fairseq's table (M2M100): sin | cos halves with frequencies 10000^(-i / (dim/2 - 1)),
    computed in float32 as there (on the CPU, also inside a meta-device build); the padding row is zero."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device="cpu").float() * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(num_positions, device="cpu").float()[:, None] * freq[None]
    table = torch.cat([angles.sin(), angles.cos(), torch.zeros(num_positions, dim % 2, device="cpu")], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


def padding_row(spec, config, table: str, rows: int) -> int | None:
    """The pad_token_id row of an embedding table that transformers builds with padding_idx (spec.padding_rows):
    it starts at zero and gets no gradient, as there."""
    pad = config.get("pad_token_id")
    return pad if table in spec.padding_rows and pad is not None and 0 <= pad < rows else None


class Embeddings(nn.Module):
    """word (+ position) (+ token type), optionally scaled, normed and projected to the hidden size.

    Covers BERT (all three + norm), RoBERTa (positions counted past padding), ALBERT/ELECTRA (factorised: embed in
    `embedding_size`, project to `hidden_size`), GPT-2 (word + learned position), BART (scale + offset positions).
    """

    def __init__(self, spec, config):
        super().__init__()
        hidden = config.hidden_size
        size = config.get("embedding_size", hidden) if spec.embedding_projection else hidden
        self.word = nn.Embedding(config.vocab_size, size, padding_idx=padding_row(spec, config, "word",
                                                                                  config.vocab_size))
        self.position = None
        kind = config.get("position_embedding_type", "absolute")
        if spec.position == "learned" and kind != "absolute":  # BERT-family relative_key(_query) variants
            raise NotImplementedError(f"config.json: position_embedding_type={kind!r} is not supported, only absolute")
        if spec.position == "learned":
            positions = config.max_position_embeddings + spec.position_offset
            self.position = nn.Embedding(positions, size, padding_idx=padding_row(spec, config, "position", positions))
        # CTRL: a fixed table computed here, not stored in checkpoints; a plain CPU tensor (not a buffer) so that a
        # model built on the meta device still has it
        self.sinusoid = None
        if spec.position == "sinusoidal":
            with torch.device("cpu"):
                self.sinusoid = sinusoidal_table(config.max_position_embeddings, size)
        # M2M100: positions count past padding_idx, whose row is zero; the table grows with the input
        self.pad = config.get("pad_token_id") if spec.position == "sinusoidal_fairseq" else None
        if self.pad is not None:
            self.sinusoid = fairseq_sinusoidal_table(config.max_position_embeddings + self.pad + 1, size, self.pad)
        self.token_type = nn.Embedding(config.type_vocab_size, size) if spec.token_types is True else None
        self.token_types_from_words = spec.token_types == "words"
        self.norm = norm(norm_kind(spec, config), size, config.layer_norm_eps) if spec.embedding_norm else None
        project = spec.embedding_projection == "always" or (spec.embedding_projection and size != hidden)
        self.project = nn.Linear(size, hidden) if project else None
        self.scale = math.sqrt(hidden) if spec.embedding_scale else 1.0
        self.dropout = dropout_rate(spec, config, "embedding")
        self.position_offset = spec.position_offset
        self.max_positions = config.get("max_position_embeddings", 0)

    def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None):
        x = self.word(input_ids) if inputs_embeds is None else inputs_embeds
        if self.scale != 1.0:
            x = x * self.scale
        if self.position is not None or self.sinusoid is not None:
            index = position_ids + self.position_offset
            table_size = self.position.num_embeddings if self.position is not None else self.sinusoid.shape[0]
            if index.numel() and int(index.max()) >= table_size and self.pad is not None:
                self.sinusoid = fairseq_sinusoidal_table(int(index.max()) + 1, self.sinusoid.shape[1], self.pad)
            elif index.numel() and int(index.max()) >= table_size:
                raise ValueError(
                    f"position {int(index.max()) - self.position_offset} is past the model's position table "
                    f"(max_position_embeddings={self.max_positions}); shorten the input (truncation=True) or, when "
                    "generating, ask for fewer tokens (max_new_tokens / max_length)"
                )
            if self.position is not None:
                x = x + self.position(index)
            else:
                self.sinusoid = self.sinusoid.to(x.device)
                x = x + self.sinusoid[index].to(x.dtype)
        if self.token_types_from_words and token_type_ids is not None:
            x = x + self.word(token_type_ids) * self.scale  # scaled like the words (CTRL; others scale by 1)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(x[..., 0], dtype=torch.long)
            x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        x = dropout(x, self.dropout, self.training)
        if self.project is not None:
            x = self.project(x)
        return x


# the same kernels as ACTIVATIONS, writing into their input (bitwise the same numbers)
INPLACE_ACTIVATIONS = {
    "gelu": torch._C._nn.gelu_,
    "gelu_pytorch_tanh": lambda x: torch._C._nn.gelu_(x, approximate="tanh"),
    "relu": torch.relu_,
    "silu": lambda x: F.silu(x, inplace=True),
    "swish": lambda x: F.silu(x, inplace=True),
}
SCRATCH_ROWS = 256  # from this many rows on, the MLP's inner activations go to a reused scratch buffer


class _Scratch(threading.local):
    """One float buffer per thread, grown to the largest request and reused: the MLP's (rows, inner) activations
    are dead once the down projection has read them, so every MLP of every model in the thread can share it."""

    buffer: torch.Tensor | None = None

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        buffer = self.buffer
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buffer[:numel]


_SCRATCH = _Scratch()


def release_scratch():
    """Free this thread's MLP scratch buffer (it holds the largest inner activation seen so far)."""
    _SCRATCH.buffer = None


def _linear_into(out, x, layer):
    """`layer(x)` written into `out` (rows, out_features): addmm/mm as F.linear calls them, so the same numbers."""
    weight = layer.weight.t()
    return torch.addmm(layer.bias, x, weight, out=out) if layer.bias is not None else torch.mm(x, weight, out=out)


def _hooked(module) -> bool:
    """A hook could keep the module's input, which must then not be a scratch buffer overwritten later."""
    hooks = torch.nn.modules.module
    return bool(module._forward_pre_hooks or module._forward_hooks or hooks._global_forward_pre_hooks
                or hooks._global_forward_hooks)


class MLP(nn.Module):
    """up -> act -> down, or the gated form down(act(gate(x)) * up(x)) of T5 v1.1 / Llama.

    At inference over many rows (an encoder's batch, a prompt), the (rows, inner) activations are written into a
    per-thread scratch buffer and activated in place: a fresh 12 MB tensor per layer costs its page faults again on
    every call (~5-9% of a DistilBERT forward at batch 32). Same kernels, same numbers.
    """

    def __init__(self, hidden: int, inner: int, act: str, gated: bool = False, bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout  # after the activation (BART's activation_dropout, T5's dropout_rate)
        self.gate = nn.Linear(hidden, inner, bias=bias) if gated else None
        self.up = nn.Linear(hidden, inner, bias=bias)
        self.down = nn.Linear(inner, hidden, bias=bias)
        self.act = activation(act)
        self.act_ = INPLACE_ACTIVATIONS.get(act)
        self.gate_up = None  # gate and up joined (quantized block layers: modeling/quant.join_projections)

    def forward(self, x):
        if self.gate_up is not None:  # one pass over x for both halves
            gate, up = self.gate_up(x).chunk(2, -1)
            return self.down(dropout(self.act(gate) * up, self.dropout, self.training))
        rows = x.numel() // x.shape[-1]
        if (self.act_ is not None and rows >= SCRATCH_ROWS and not torch.is_grad_enabled() and x.is_contiguous()
                and not (self.training and self.dropout)
                and x.dtype == self.up.weight.dtype and not _hooked(self.down)):
            return self.down(self._inner_in_scratch(x.view(rows, -1)).view(*x.shape[:-1], -1))
        if self.gate is not None:
            return self.down(dropout(self.act(self.gate(x)) * self.up(x), self.dropout, self.training))
        return self.down(dropout(self.act(self.up(x)), self.dropout, self.training))

    def _inner_in_scratch(self, x):  # x (rows, hidden) -> (rows, inner), in the scratch buffer
        inner = self.up.weight.shape[0]
        rows = x.shape[0]
        if self.gate is None:
            return self.act_(_linear_into(_SCRATCH.take(rows * inner, x).view(rows, inner), x, self.up))
        both = _SCRATCH.take(2 * rows * inner, x)
        gate = self.act_(_linear_into(both[:rows * inner].view(rows, inner), x, self.gate))
        return gate.mul_(_linear_into(both[rows * inner:].view(rows, inner), x, self.up))
