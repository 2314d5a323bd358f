"""BatchEncoding: the dict a tokenizer returns, plus the alignment helpers of the backend encodings."""
from __future__ import annotations

from collections import UserDict
from typing import NamedTuple


class CharSpan(NamedTuple):
    start: int
    end: int


class TokenSpan(NamedTuple):
    start: int
    end: int


class BatchEncoding(UserDict):
    """input_ids / attention_mask / ... with dict and attribute access; `encodings` are the `tokenizers` Encodings."""

    def __init__(self, data=None, encodings=None, tensor_type=None, n_sequences=None):
        super().__init__(data)
        self._encodings = encodings
        if n_sequences is None and encodings:
            n_sequences = encodings[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type)

    @property
    def encodings(self):
        return self._encodings

    @property
    def n_sequences(self):
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    def __getitem__(self, item):
        if isinstance(item, str):
            return self.data[item]
        if self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: self.data[key][item] for key in self.data}
        raise KeyError("int indexing needs the fast encodings, which this BatchEncoding does not hold")

    def __getattr__(self, item: str):
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getstate__(self):
        return {"data": self.data, "encodings": self._encodings}

    def __setstate__(self, state):
        self.data = state.get("data", {})
        self._encodings = state.get("encodings")
        self._n_sequences = None

    # ---------------------------------------------------------------- alignment (fast encodings only)
    def _encoding(self, batch_index: int):
        if not self._encodings:
            raise ValueError("this BatchEncoding holds no fast encodings, so it cannot map tokens to words or chars")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).sequence_ids

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).word_ids

    words = word_ids

    def _split(self, batch_or_index: int, index: int | None) -> tuple[int, int]:
        """Methods take (index) for a single sequence or (batch_index, index)."""
        if index is None:
            return 0, batch_or_index
        return batch_or_index, index

    def _negative(self, batch_index: int, token_index: int) -> int:
        return token_index + len(self._encoding(batch_index).ids) if token_index < 0 else token_index

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None):
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        return self._encoding(batch_index).token_to_sequence(self._negative(batch_index, token_index))

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None):
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        return self._encoding(batch_index).token_to_word(self._negative(batch_index, token_index))

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None):
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        span = self._encoding(batch_index).token_to_chars(self._negative(batch_index, token_index))
        return CharSpan(*span) if span is not None else None

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0):
        batch_index, word_index = self._split(batch_or_word_index, word_index)
        span = self._encoding(batch_index).word_to_tokens(word_index, sequence_index)
        return TokenSpan(*span) if span is not None else None

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0):
        batch_index, word_index = self._split(batch_or_word_index, word_index)
        return CharSpan(*self._encoding(batch_index).word_to_chars(word_index, sequence_index))

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        batch_index, char_index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        batch_index, char_index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch_index).char_to_word(char_index, sequence_index)

    # ---------------------------------------------------------------- tensors
    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis: bool = False) -> BatchEncoding:
        if tensor_type is None:
            return self
        tensor_type = str(getattr(tensor_type, "value", tensor_type))
        if tensor_type not in ("pt", "np"):
            raise ValueError(f"return_tensors={tensor_type!r} is not supported; use 'pt', 'np' or None")
        for key, value in self.items():
            if key == "overflowing_tokens":
                continue
            if prepend_batch_axis:
                value = [value]
            try:
                self[key] = _as_tensor(value, tensor_type)
            except (ValueError, TypeError, RuntimeError):
                if key == "overflowing_tokens":
                    raise
                raise ValueError(
                    f"Unable to create tensor for {key!r}: the sequences have different lengths. Use padding=True "
                    "(and truncation=True) to get a rectangular batch."
                ) from None
        return self

    def to(self, device, *, non_blocking: bool = False) -> BatchEncoding:
        import torch

        if isinstance(device, (str, int, torch.device)):
            self.data = {k: v.to(device=device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
                         for k, v in self.data.items()}
        else:
            raise TypeError(f"BatchEncoding.to() takes a device (str, int or torch.device), "
                            f"not {type(device).__name__}")
        return self


def _as_tensor(value, tensor_type: str):
    import numpy as np

    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        if len({len(row) for row in value}) > 1:
            raise ValueError("ragged")
    if tensor_type == "np":
        return np.asarray(value)
    import torch

    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        value = np.array(value)
    return torch.tensor(value)
