"""Data collators: a list of tokenized examples -> one padded batch of tensors, as transformers' collators do.

Each is a small dataclass with transformers' name, fields and defaults; the random masking of the language-modeling
collator draws the same numbers in the same order as transformers' (so a seeded run masks the same tokens).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


def default_data_collator(features: list, return_tensors: str = "pt") -> dict:
    """Stack already-equal-length features into tensors; 'label' / 'label_ids' become 'labels' (long for ints,
    float for floats), like transformers' default_data_collator."""
    if not isinstance(features[0], Mapping):
        features = [vars(f) for f in features]
    first = features[0]
    batch = {}
    for name in ("label", "label_ids"):
        value = first.get(name)
        if value is None:
            continue
        value = value.item() if isinstance(value, torch.Tensor) and value.dim() == 0 else value
        if isinstance(value, torch.Tensor):
            batch["labels"] = torch.stack([f[name] for f in features])
        else:
            sample = value[0] if isinstance(value, (list, tuple)) and value else value
            dtype = torch.long if isinstance(sample, int) else torch.float
            batch["labels"] = torch.tensor([f[name] for f in features], dtype=dtype)
    for key, value in first.items():
        if key in ("label", "label_ids") or value is None or isinstance(value, str):
            continue
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([f[key] for f in features])
        else:
            batch[key] = torch.tensor([f[key] for f in features])
    return batch


def _pad(tokenizer, features, padding, max_length, pad_to_multiple_of):
    return tokenizer.pad(features, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                         return_tensors="pt")


def _rename_labels(batch):
    for name in ("label", "label_ids"):
        if name in batch:
            batch["labels"] = batch.pop(name)
    return batch


@dataclass
class DataCollatorWithPadding:
    """Pads input_ids / attention_mask / token_type_ids to the longest example (or max_length); 'label' -> 'labels'."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features: list[dict]) -> dict:
        return dict(_rename_labels(_pad(self.tokenizer, features, self.padding, self.max_length,
                                        self.pad_to_multiple_of)))


def _pad_labels(labels, length: int, pad_id: int, side: str) -> torch.Tensor:
    rows = []
    for label in labels:
        label = label.tolist() if isinstance(label, torch.Tensor) else list(label)
        fill = [pad_id] * (length - len(label))
        rows.append(label + fill if side == "right" else fill + label)
    return torch.tensor(rows, dtype=torch.int64)


@dataclass
class DataCollatorForTokenClassification:
    """Pads the inputs like DataCollatorWithPadding and the per-token labels with label_pad_token_id (-100)."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: list[dict]) -> dict:
        name = "label" if "label" in features[0] else "labels"
        labels = [f[name] for f in features] if name in features[0] else None
        batch = dict(_pad(self.tokenizer, [{k: v for k, v in f.items() if k != name} for f in features],
                          self.padding, self.max_length, self.pad_to_multiple_of))
        if labels is not None:
            length = batch["input_ids"].shape[1]
            batch[name] = _pad_labels(labels, length, self.label_pad_token_id, self.tokenizer.padding_side)
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    """Pads inputs, pads labels with -100 to the longest label, and (given the model) adds decoder_input_ids: the
    labels shifted right by the model's own rule, as the model would build them itself."""

    tokenizer: Any
    model: Any = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features: list[dict], return_tensors=None) -> dict:
        name = "label" if "label" in features[0] else "labels"
        labels = [f[name] for f in features] if name in features[0] else None
        if labels is not None and all(label is None for label in labels):
            labels = None
        batch = dict(_pad(self.tokenizer, [{k: v for k, v in f.items() if k != name} for f in features],
                          self.padding, self.max_length, self.pad_to_multiple_of))
        if labels is None:
            batch["labels"] = None
            return batch
        longest = self.max_length if self.padding == "max_length" and self.max_length else max(map(len, labels))
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch["labels"] = _pad_labels(labels, longest, self.label_pad_token_id, self.tokenizer.padding_side)
        shift = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
        if shift is not None:
            batch["decoder_input_ids"] = shift(labels=batch["labels"])
        elif hasattr(self.model, "shift_right"):
            batch["decoder_input_ids"] = self.model.shift_right(batch["labels"])
        return batch


@dataclass
class DataCollatorForLanguageModeling:
    """mlm=True: pick mlm_probability of the non-special tokens; of those 80% become [MASK], 10% a random token, 10%
    stay; labels are the original ids there and -100 elsewhere. mlm=False: labels = input_ids with padding -100 (the
    causal-LM model shifts them). `seed` gives the collator its own generator (else torch's global one)."""

    tokenizer: Any
    mlm: bool = True
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    seed: int | None = None

    def __post_init__(self):
        if self.mlm and self.tokenizer.mask_token is None:
            raise ValueError("This tokenizer does not have a mask token which is necessary for masked language "
                             "modeling. You should pass `mlm=False` to train on causal language modeling instead.")
        if not 0 <= self.mlm_probability <= 1:
            raise ValueError("mlm_probability should be between 0 and 1.")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError("The sum of mask_replace_prob and random_replace_prob should not exceed 1")
        self.generator = None

    def __call__(self, examples: list) -> dict:
        if self.seed and self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)
        if isinstance(examples[0], Mapping):
            batch = dict(_pad(self.tokenizer, examples, True, None, self.pad_to_multiple_of))
        else:
            batch = {"input_ids": self._stack(examples)}
        special = batch.pop("special_tokens_mask", None)
        batch.pop("offset_mapping", None)
        if self.mlm:
            batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"], special)
        else:
            labels = batch["input_ids"].clone()
            if self.tokenizer.pad_token_id is not None:
                labels[labels == self.tokenizer.pad_token_id] = -100
            batch["labels"] = labels
        return batch

    def _stack(self, examples) -> torch.Tensor:
        rows = [torch.as_tensor(e, dtype=torch.long) for e in examples]
        length = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        if all(len(r) == length for r in rows):
            return torch.stack(rows)
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the examples have different lengths and the tokenizer has no pad token to pad them")
        out = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            if self.tokenizer.padding_side == "right":
                out[i, :len(row)] = row
            else:
                out[i, length - len(row):] = row
        return out

    def mask_tokens(self, inputs: torch.Tensor, special_tokens_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input_ids, labels): the draws and their order are transformers' torch_mask_tokens'."""
        labels = inputs.clone()
        probability = torch.full(labels.shape, self.mlm_probability)
        if special_tokens_mask is None:
            special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=labels.dtype)
            special_tokens_mask = torch.isin(labels, special_ids)
        probability.masked_fill_(torch.as_tensor(special_tokens_mask).bool(), 0.0)
        masked = torch.bernoulli(probability, generator=self.generator).bool()
        labels[~masked] = -100
        replaced = torch.bernoulli(torch.full(labels.shape, self.mask_replace_prob), generator=self.generator).bool()
        replaced &= masked
        inputs[replaced] = self.tokenizer.convert_tokens_to_ids(self.tokenizer.mask_token)
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return inputs, labels
        scaled = self.random_replace_prob / (1 - self.mask_replace_prob)
        random = torch.bernoulli(torch.full(labels.shape, scaled), generator=self.generator).bool() & masked & ~replaced
        words = torch.randint(len(self.tokenizer), labels.shape, dtype=torch.long, generator=self.generator)
        inputs[random] = words[random]
        return inputs, labels


def align_labels_with_tokens(labels: list[int], word_ids: list[int | None], label_all_tokens: bool = False,
                             ignore_index: int = -100) -> list[int]:
    """Word-level labels -> one label per token (`word_ids` from `encoding.word_ids(i)`): special tokens get -100, the
    first sub-token of each word its word's label, the other sub-tokens -100 (or the same label with
    label_all_tokens=True)."""
    aligned, previous = [], None
    for word in word_ids:
        if word is None:
            aligned.append(ignore_index)
        elif word >= len(labels):
            raise ValueError(f"word index {word} has no label: only {len(labels)} labels for this example")
        elif word != previous or label_all_tokens:
            aligned.append(labels[word])
        else:
            aligned.append(ignore_index)
        previous = word
    return aligned
