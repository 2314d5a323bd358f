"""Datasets the Trainer accepts (a list of dicts, a torch Dataset, a `datasets.Dataset`) and the checks on them.

Columns the model does not take (raw text, ids) are dropped before collation, as transformers does with
remove_unused_columns; a dataset with none of the model's inputs is an error that lists the columns it has.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

# inputs our models take through **kwargs (their forward signature cannot list them)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "labels",
                "start_positions", "end_positions", "decoder_input_ids", "decoder_attention_mask",
                "special_tokens_mask")
LABEL_COLUMNS = ("label", "label_ids", "labels")


def check_dataset(dataset, what: str = "train_dataset"):
    """A dataset must be indexable with a length and hold at least one example; returns it."""
    if dataset is None:
        raise ValueError(f"Trainer: {what} is None")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"Trainer: {what} must be a list of dicts, a torch Dataset or a datasets.Dataset "
                        f"(indexable, with a length); got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"Trainer: {what} is empty (0 examples); nothing to train or evaluate on")
    return dataset


def model_inputs(model) -> set[str]:
    """The feature names the model's forward takes (plus label columns the collators rename)."""
    params = inspect.signature(model.forward).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()) and hasattr(model, "spec"):
        names |= set(MODEL_INPUTS)
    spec = getattr(model, "spec", None)
    if spec is not None and not spec.token_types:  # DistilBERT, GPT-2, ...: transformers drops token_type_ids
        names.discard("token_type_ids")
    return names | set(LABEL_COLUMNS)


def columns(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return list(names)
    first = dataset[0]
    return list(first) if isinstance(first, Mapping) else []


def keep_columns(dataset, model, what: str, remove_unused: bool = True) -> set[str] | None:
    """The columns to pass to the collator (None: pass everything); an error when no model input is there."""
    present = columns(dataset)
    if not present:
        return None
    wanted = model_inputs(model)
    kept = [c for c in present if c in wanted]
    if not any(c not in LABEL_COLUMNS for c in kept):
        raise ValueError(f"{what} has the columns {present} but none the model takes "
                         f"({sorted(wanted - set(LABEL_COLUMNS))}): tokenize the text first, e.g. "
                         f"dataset.map(lambda ex: tokenizer(ex['text'], truncation=True), batched=True)")
    return set(kept) if remove_unused else None


class Features:
    """dataset[i] as a plain dict holding only the kept columns (the collator's input)."""

    def __init__(self, dataset, keep: set[str] | None):
        self.dataset, self.keep = dataset, keep

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        example = self.dataset[int(index)]
        if self.keep is None or not isinstance(example, Mapping):
            return example
        return {k: v for k, v in example.items() if k in self.keep}


def lengths(dataset, length_column: str = "length") -> list[int]:
    """Per-example lengths for group_by_length: a `length` column when there is one, else len(input_ids)."""
    if length_column in columns(dataset):
        return [int(x) for x in dataset[length_column]] if hasattr(dataset, "column_names") \
            else [int(ex[length_column]) for ex in dataset]
    return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def check_labels(model, batch: Mapping) -> None:
    """Class ids outside [0, num_labels) would index past the classifier (or be silently wrong): name them."""
    task, config = getattr(model, "task", None), getattr(model, "config", None)
    labels = batch.get("labels")
    if labels is None or config is None or task not in ("sequence_classification", "token_classification"):
        return
    if labels.is_floating_point() or (task == "sequence_classification" and config.get("num_labels", 2) == 1):
        return
    real = labels[labels != -100]
    num_labels = config.num_labels
    if real.numel() and (int(real.min()) < 0 or int(real.max()) >= num_labels):
        bad = sorted({int(x) for x in real.unique().tolist() if x < 0 or x >= num_labels})
        raise ValueError(f"labels {bad[:10]} are outside the model's {num_labels} classes (0..{num_labels - 1}); "
                         f"load the model with num_labels=... (and id2label/label2id) that cover every label")
