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
        buf_k, buf_v, start = self.reserve(layer_idx, keys.shape[2], keys, values.shape[3])
        end = start + keys.shape[2]
        buf_k[:, :, start:end] = keys
        buf_v[:, :, start:end] = values
        return buf_k[:, :, :end], buf_v[:, :, :end]

    def decode_slot(self, layer_idx: int, like: torch.Tensor):
        """For a fused decode step (one new position per row, keys shaped like `like` (B, H, 1, D)): the key and
        value buffers, viewed so that positions [0, position] are those attended, and `position`, where the new
        keys and values go (counted as written)."""
        return self.reserve(layer_idx, 1, like)

    def reserve(self, layer_idx: int, new: int, like: torch.Tensor, value_dim: int | None = None):
        """Room for `new` more positions of layer `layer_idx`, keys shaped like `like` (B, H, *, D): returns the
        whole (B, H, capacity, D) key and value buffers and the first new position, and counts the positions as
        written (the caller writes them: update(), or a fused decode step)."""
        start = self._lengths[layer_idx]
        buf_k, buf_v = self._keys[layer_idx], self._values[layer_idx]
        if buf_k is None or start + new > buf_k.shape[2] or buf_k.shape[0] != like.shape[0]:
            capacity = max(2 * (start + new), 16)
            grown_k = like.new_empty(like.shape[0], like.shape[1], capacity, like.shape[3])
            grown_v = like.new_empty(like.shape[0], like.shape[1], capacity, value_dim or like.shape[3])
            if buf_k is not None and start:
                grown_k[:, :, :start] = buf_k[:, :, :start]
                grown_v[:, :, :start] = buf_v[:, :, :start]
            buf_k, buf_v = self._keys[layer_idx], self._values[layer_idx] = grown_k, grown_v
        self._lengths[layer_idx] = start + new
        return buf_k, buf_v, start

    def reorder_cache(self, beam_idx: torch.Tensor):
        """Keep the rows of `beam_idx` (beam search): every layer's self and cross K/V and batch-first extras."""
        moved = (beam_idx != torch.arange(beam_idx.shape[0], device=beam_idx.device)).nonzero().view(-1)
        for i, (k, v) in enumerate(zip(self._keys, self._values)):
            if k is None:
                continue
            if k.shape[0] != beam_idx.shape[0]:  # a different row count: gather into new buffers
                self._keys[i], self._values[i] = k.index_select(0, beam_idx), v.index_select(0, beam_idx)
                continue
            _move_rows(k, beam_idx, moved, self._lengths[i])
            _move_rows(v, beam_idx, moved, self._lengths[i])
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


def _move_rows(buffer: torch.Tensor, rows: torch.Tensor, moved: torch.Tensor, used: int):
    """In place, buffer[r] = buffer[rows[r]] over the `used` positions, for the rows `moved` whose source is another
    row: beam search keeps most beams on their own row (75% of rows per step in the Marian benchmark), so this copies
    a quarter of what gathering every row into a new buffer would, and allocates only that quarter."""
    if moved.numel() == 0:
        return
    live = buffer[:, :, :used]
    live.index_copy_(0, moved, live.index_select(0, rows[moved]))  # index_select copies: sources may be overwritten
