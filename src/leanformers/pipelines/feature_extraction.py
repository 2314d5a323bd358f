"""feature-extraction: the model's hidden states per token, or (beyond transformers) one sentence embedding per text.

Token features come back as transformers returns them: nested lists shaped [1, tokens, hidden] (a tensor with
`return_tensors=True`). With a batch they are cut to each text's own length, so they equal the batch_size=1 result.

Sentence embeddings, as sentence-transformers users expect: `pooling="mean" | "cls" | "max"`, or `pooling="auto"` to
read the checkpoint's `1_Pooling/config.json` (and `modules.json` for a Normalize step, `sentence_bert_config.json`
for max_seq_length); `normalize=True` scales each embedding to unit length.
"""
from __future__ import annotations

import numpy as np

from .. import hub
from .base import Pipeline, check_text, split_rows, windows_from

POOLINGS = ("mean", "cls", "max", "auto")


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"

    def parameters(self, truncation=None, tokenize_kwargs=None, return_tensors=None, pooling=None, normalize=None,
                   **kwargs):
        super().parameters(**kwargs)
        tokenize_kwargs = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in tokenize_kwargs:
                raise ValueError("truncation parameter defined twice (given as keyword argument as well as in "
                                 "tokenize_kwargs)")
            tokenize_kwargs["truncation"] = truncation
        for key in ("return_tensors", "return_overflowing_tokens", "is_split_into_words"):
            if key in tokenize_kwargs:
                raise ValueError(f"tokenize_kwargs may not set {key!r} (the pipeline decides it)")
        if pooling not in (None, *POOLINGS):
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)} or None (token features), not {pooling!r}")
        if pooling == "auto":
            pooling, normalize, max_seq_length = self.sentence_transformers_settings(normalize)
            if max_seq_length and "truncation" not in tokenize_kwargs:
                tokenize_kwargs.update(truncation=True, max_length=max_seq_length)
        if normalize and pooling is None:
            raise ValueError("normalize=True needs pooling= (normalising applies to sentence embeddings)")
        return {"tokenize_kwargs": tokenize_kwargs, "return_tensors": bool(return_tensors), "pooling": pooling,
                "normalize": bool(normalize)}

    def sentence_transformers_settings(self, normalize):
        """(pooling, normalize, max_seq_length) from a sentence-transformers checkpoint's side files."""
        name = self.config.get("_name_or_path")
        pooling_config = hub.load_json(name, "1_Pooling/config.json", required=False) if name else None
        if pooling_config is None:
            raise ValueError(f"pooling='auto' needs 1_Pooling/config.json next to the model ({name!r} has none); "
                             "pass pooling='mean' or 'cls' instead")
        modes = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
        chosen = [mode for mode, key in modes.items() if pooling_config.get(key)]
        if len(chosen) != 1:
            raise ValueError(f"1_Pooling/config.json of {name!r} asks for {chosen or 'no'} pooling; leanformers "
                             "supports exactly one of mean, cls, max")
        if normalize is None:
            modules = hub.load_json(name, "modules.json", required=False) or []
            normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        settings = hub.load_json(name, "sentence_bert_config.json", required=False) or {}
        return chosen[0], normalize, settings.get("max_seq_length")

    def encode(self, items, params):
        texts = [check_text(item) for item in items]
        options = {"truncation": None, **params["tokenize_kwargs"]}
        encoded = self.tokenizer(texts, return_token_type_ids=self.takes_token_types(), **options)
        windows = windows_from(encoded)
        self.check_lengths(windows, "pass truncation=True to cut long texts to the model's window")
        return [[window] for window in windows]

    def forward(self, batch):
        inputs = self.model_inputs(batch)
        return split_rows({"features": self.model(**inputs)[0]}, [len(w["input_ids"]) for w in batch])

    def postprocess(self, item, windows, params):
        features = windows[0].outputs["features"]  # (tokens, hidden)
        if params["pooling"] is not None:
            features = pool(features, params["pooling"])
            if params["normalize"]:
                features = features / max(np.linalg.norm(features), 1e-12)
        else:
            features = features[None]  # transformers keeps the batch axis: [1, tokens, hidden]
        if params["return_tensors"]:
            import torch

            return torch.from_numpy(np.ascontiguousarray(features))
        return features.tolist()


def pool(features: np.ndarray, pooling: str) -> np.ndarray:
    """(tokens, hidden) of one text, padding already cut away -> (hidden,)."""
    if pooling == "cls":
        return features[0]
    if pooling == "max":
        return features.max(axis=0)
    return features.sum(axis=0) / features.shape[0]
