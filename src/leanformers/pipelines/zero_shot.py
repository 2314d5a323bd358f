"""zero-shot-classification: each candidate label becomes an NLI hypothesis scored against the text.

Beyond transformers (one model pass per label): all (text, hypothesis) pairs of a batch go through the model
together, and the numbers stay transformers'.
"""
from __future__ import annotations

import logging

import numpy as np

from .base import Pipeline, check_text, group_by_item, windows_from

logger = logging.getLogger(__name__)


class ZeroShotClassificationPipeline(Pipeline):
    task = "zero-shot-classification"
    heads = ("sequence_classification",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.entailment_id == -1:
            logger.warning("Failed to determine 'entailment' label id from the label2id mapping in the model config. "
                           "Setting to -1. Define a descriptive label2id mapping in the model config to ensure "
                           "correct outputs.")

    @property
    def entailment_id(self) -> int:
        for label, index in self.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1

    def parameters(self, candidate_labels=None, hypothesis_template="This example is {}.", multi_label=None,
                   multi_class=None, **kwargs):
        super().parameters(**kwargs)
        if multi_class is not None and multi_label is None:
            logger.warning("The `multi_class` argument has been deprecated and renamed to `multi_label`. "
                           "`multi_class` will be removed in a future version of Transformers.")
            multi_label = multi_class
        if isinstance(candidate_labels, str):
            candidate_labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
        if candidate_labels is not None:
            candidate_labels = [check_text(label, "a candidate label") for label in candidate_labels]
        if not isinstance(hypothesis_template, str) or hypothesis_template.format("x") == hypothesis_template:
            raise ValueError(f'The provided hypothesis_template "{hypothesis_template}" was not able to be formatted '
                             "with the target labels. Make sure the passed template includes formatting syntax such "
                             "as {} where the label should go.")
        return {"labels": candidate_labels, "template": hypothesis_template, "multi_label": bool(multi_label)}

    def __call__(self, sequences, *args, **kwargs):
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise ValueError(f"Unable to understand extra arguments {args}")
        return super().__call__(sequences, **kwargs)

    def encode(self, items, params):
        labels = params["labels"]
        if not labels:
            raise ValueError("zero-shot-classification needs candidate_labels (a list, or a comma-separated string): "
                             "You must include at least one label and at least one sequence.")
        texts = [check_text(text) for text in items]
        premises = [text for text in texts for _ in labels]
        hypotheses = [params["template"].format(label) for _ in texts for label in labels]
        limit = self.max_length()
        try:
            encoded = self.tokenizer(premises, hypotheses, truncation="only_first" if limit else False,
                                     max_length=limit, return_token_type_ids=self.takes_token_types())
        except Exception as err:
            if "too short" not in str(err):
                raise
            # the hypothesis alone is longer than the window: transformers then does not truncate
            encoded = self.tokenizer(premises, hypotheses, return_token_type_ids=self.takes_token_types())
        windows = windows_from(encoded)
        self.check_lengths(windows, "shorten the text or the hypothesis_template")
        return group_by_item(windows, [i for i in range(len(texts)) for _ in labels], len(texts))

    def postprocess(self, item, windows, params):
        labels = params["labels"]
        logits = np.stack([w.outputs["logits"] for w in windows])[None]  # (1, labels, classes)
        if params["multi_label"] or len(labels) == 1:
            # each label alone: softmax of entailment against contradiction
            entailment_id = self.entailment_id
            contradiction_id = -1 if entailment_id == 0 else 0
            pair = logits[..., [contradiction_id, entailment_id]]
            scores = (np.exp(pair) / np.exp(pair).sum(-1, keepdims=True))[..., 1]
        else:  # softmax of the entailment logits across the labels
            entail = logits[..., self.entailment_id]
            scores = np.exp(entail) / np.exp(entail).sum(-1, keepdims=True)
        top = list(reversed(scores[0].argsort()))
        return {"sequence": item, "labels": [labels[i] for i in top], "scores": scores[0, top].tolist()}
