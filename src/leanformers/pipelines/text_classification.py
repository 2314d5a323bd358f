"""text-classification (sentiment-analysis): one label distribution per text or text pair.

Beyond transformers 4.57: texts longer than the model's window are truncated by default (transformers crashes,
transformers#5983), and `stride=N` classifies a long text in overlapping windows and averages their scores.
"""
from __future__ import annotations

import warnings

import numpy as np

from .base import Pipeline, check_text, group_by_item, sigmoid, softmax, windows_from

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET = object()  # top_k=None means "all labels", so absence needs its own marker


class TextClassificationPipeline(Pipeline):
    task = "text-classification"
    heads = ("sequence_classification",)

    def parameters(self, top_k=_UNSET, function_to_apply=None, return_all_scores=None, truncation=None,
                   max_length=None, stride=None, **kwargs):
        super().parameters(**kwargs)
        if return_all_scores is None:
            return_all_scores = self.config.get("return_all_scores")
        legacy = top_k is _UNSET
        if legacy and return_all_scores is not None:
            warnings.warn("`return_all_scores` is now deprecated,  if want a similar functionality use `top_k=None` "
                          "instead of `return_all_scores=True` or `top_k=1` instead of `return_all_scores=False`.",
                          UserWarning)
            top_k, legacy = (None if return_all_scores else 1), False
        if not legacy and top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None (all labels), not {top_k!r}")
        if function_to_apply is not None:
            function_to_apply = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if function_to_apply not in FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, not {function_to_apply!r}")
        if stride is not None and (not isinstance(stride, int) or stride < 0):
            raise ValueError(f"stride must be a non-negative int, not {stride!r}")
        return {"top_k": 1 if legacy else top_k, "legacy": legacy, "function": function_to_apply,
                "truncation": truncation, "max_length": max_length, "stride": stride}

    def __call__(self, inputs, **kwargs):
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return [result]  # transformers wraps a single text's result in a list
        return result

    # ---------------------------------------------------------------- encode
    def encode(self, items, params):
        texts = [_as_pair(item) for item in items]
        windows = [None] * len(items)
        for has_pair in (False, True):
            chosen = [i for i, t in enumerate(texts) if (t[1] is not None) == has_pair]
            if not chosen:
                continue
            firsts = [texts[i][0] for i in chosen]
            pairs = [texts[i][1] for i in chosen] if has_pair else None
            for index, item_windows in zip(chosen, self.tokenize(firsts, pairs, params)):
                windows[index] = item_windows
        return windows

    def tokenize(self, texts, pairs, params):
        """Texts (and pairs) -> windows per text: one, or several overlapping ones with `stride`."""
        limit = params["max_length"] or self.max_length()
        truncation = params["truncation"]
        if truncation is None:
            truncation = limit is not None
        strided = params["stride"] is not None and truncation
        encoded = self.tokenizer(texts, pairs, truncation=truncation, max_length=limit if truncation else None,
                                 stride=params["stride"] or 0, return_overflowing_tokens=strided,
                                 return_token_type_ids=self.takes_token_types())
        sample_of = encoded["overflow_to_sample_mapping"] if strided else list(range(len(texts)))
        windows = windows_from(encoded)
        self.check_lengths(windows, "pass truncation=True (the default) or stride= to classify long texts")
        return group_by_item(windows, sample_of, len(texts))

    # ---------------------------------------------------------------- postprocess
    def postprocess(self, item, windows, params):
        function = params["function"] or self.default_function()
        scores = np.mean([_apply(function, w.outputs["logits"]) for w in windows], axis=0)
        labels = self.config.id2label
        if params["top_k"] == 1 and params["legacy"]:
            return {"label": labels[scores.argmax().item()], "score": scores.max().item()}
        results = [{"label": labels[i], "score": score.item()} for i, score in enumerate(scores)]
        if not params["legacy"]:
            results.sort(key=lambda x: x["score"], reverse=True)
            if params["top_k"] is not None:
                results = results[:params["top_k"]]
        return results

    def default_function(self) -> str:
        """transformers' choice: regression -> none, multi-label or one label -> sigmoid, several labels -> softmax."""
        problem = self.config.problem_type
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or self.config.num_labels == 1:
            return "sigmoid"
        if problem == "single_label_classification" or self.config.num_labels > 1:
            return "softmax"
        return str(self.config.get("function_to_apply", "none")).lower()


def _apply(function: str, logits: np.ndarray) -> np.ndarray:
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "softmax":
        return softmax(logits)
    return logits


def _as_pair(item) -> tuple[str, str | None]:
    """A text, a {"text", "text_pair"} dict, or the legacy [[text, pair]] -> (text, pair or None)."""
    if isinstance(item, dict):
        unknown = set(item) - {"text", "text_pair"}
        if "text" not in item or unknown:
            raise ValueError(f"a text-pair input is a dict with keys 'text' and optionally 'text_pair'; got keys "
                             f"{sorted(item)}")
        pair = item.get("text_pair")
        return check_text(item["text"], "text", True), None if pair is None else check_text(pair, "text_pair", True)
    if isinstance(item, list) and len(item) == 1 and isinstance(item[0], list) and len(item[0]) == 2:
        return check_text(item[0][0], "text", True), check_text(item[0][1], "text_pair", True)
    if isinstance(item, list):
        raise ValueError('The pipeline received invalid inputs, if you are trying to send text pairs, you can try to '
                         'send a dictionary `{"text": "My text", "text_pair": "My pair"}` in order to send a text '
                         'pair.')
    return check_text(item, allow_empty=True), None  # transformers classifies "" (as [CLS] [SEP])
