"""KV cache passed into the layers (mlx-lm style), not hidden inside them.

Self-attention keys/values grow by one step at a time; they live in a buffer that doubles when full, so a decode
step writes in place instead of concatenating the whole history (gpt-fast's preallocation, without a fixed max).
Cross-attention keys/values depend only on the encoder output: they are computed once and kept (`cross`).
"""
from __future__ import annotations

import torch


class KVCache:
    def __init__(self, num_layers: int):
        self._keys: list[torch.Tensor | None] = [None] * num_layers    # (B, H_kv, capacity, D)
        self._values: list[torch.Tensor | None] = [None] * num_layers
        self._lengths = [0] * num_layers
        # beam search: the buffers replaced by the last reorder, reused as the next reorder's destination
        self._spare_keys: list[torch.Tensor | None] = [None] * num_layers
        self._spare_values: list[torch.Tensor | None] = [None] * num_layers
        # cross K/V, (B, H, S, D) each, B = encoder rows: one per sentence under grouped cross-attention (fewer than
        # the decoder's B*k beam rows), or one per decoder row when the encoder output was expanded
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.extra: dict = {}  # architecture state that is not K/V (e.g. Transformer-XL mems)

    def __len__(self):
        return len(self._keys)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._lengths[layer_idx]

    def update(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor):
        """Append (B, H, T_new, D) keys/values; return all of them so far, (B, H, T_total, D)."""
        start, new = self._lengths[layer_idx], keys.shape[2]
        buf_k, buf_v = self._keys[layer_idx], self._values[layer_idx]
        if buf_k is None or start + new > buf_k.shape[2] or buf_k.shape[0] != keys.shape[0]:
            capacity = max(2 * (start + new), 16)
            grown_k = keys.new_empty(keys.shape[0], keys.shape[1], capacity, keys.shape[3])
            grown_v = values.new_empty(values.shape[0], values.shape[1], capacity, values.shape[3])
            if buf_k is not None and start:
                grown_k[:, :, :start] = buf_k[:, :, :start]
                grown_v[:, :, :start] = buf_v[:, :, :start]
            buf_k, buf_v = self._keys[layer_idx], self._values[layer_idx] = grown_k, grown_v
        buf_k[:, :, start:start + new] = keys
        buf_v[:, :, start:start + new] = values
        self._lengths[layer_idx] = end = start + new
        return buf_k[:, :, :end], buf_v[:, :, :end]

    def reorder_cache(self, beam_idx: torch.Tensor):
        """Keep the rows of `beam_idx` (beam search): every layer's self and cross K/V and batch-first extras."""
        for i, (k, v) in enumerate(zip(self._keys, self._values)):
            if k is not None:
                used = self._lengths[i]
                self._keys[i], self._spare_keys[i] = _gather_rows(k, self._spare_keys[i], beam_idx, used), k
                self._values[i], self._spare_values[i] = _gather_rows(v, self._spare_values[i], beam_idx, used), v
        # cross K/V stay as they are: beams move only within their own sentence, and the cross K/V hold either one
        # row per sentence (grouped cross-attention, when beam_idx has a multiple of their rows) or the same row
        # for each of its beams (expanded), so reordering would copy them unchanged every step
        self.cross = [None if kv is None else kv if beam_idx.shape[0] % kv[0].shape[0] == 0 else
                      (kv[0].index_select(0, beam_idx), kv[1].index_select(0, beam_idx)) for kv in self.cross]
        for name, value in self.extra.items():
            if isinstance(value, torch.Tensor):
                self.extra[name] = value.index_select(0, beam_idx)
            elif isinstance(value, list):
                self.extra[name] = [t.index_select(0, beam_idx) if isinstance(t, torch.Tensor) else t for t in value]

    def crop(self, length: int):
        """Forget everything after `length` positions (assisted decoding, stop-string rollback)."""
        self._lengths = [min(n, length) for n in self._lengths]


def _gather_rows(buffer: torch.Tensor, spare: torch.Tensor | None, rows: torch.Tensor, used: int) -> torch.Tensor:
    """(N, H, capacity, D) buffer -> its `rows`, written into `spare` (the buffer the previous reorder replaced) when
    the shapes fit: only the `used` positions are copied, and no fresh buffer is page-faulted in every step."""
    shape = (rows.shape[0], *buffer.shape[1:])
    if spare is None or spare.shape != shape or spare.dtype != buffer.dtype or spare.device != buffer.device:
        spare = buffer.new_empty(shape)
    torch.index_select(buffer[:, :, :used], 0, rows, out=spare[:, :, :used])
    return spare

