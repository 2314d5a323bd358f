"""fill-mask: the most likely tokens for each mask token, with the filled-in sequence (transformers 4.57's output)."""
from __future__ import annotations

import logging

import numpy as np

from .base import Pipeline, check_text, windows_from

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    heads = ("masked_lm",)

    def parameters(self, top_k=None, targets=None, tokenizer_kwargs=None, **kwargs):
        super().parameters(**kwargs)
        if self.tokenizer.mask_token_id is None:
            raise ValueError("fill-mask: the tokenizer does not define a `mask_token`.")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int, not {top_k!r}")
        tokenizer_kwargs = dict(tokenizer_kwargs or {})
        for key in ("return_tensors", "return_overflowing_tokens"):
            if key in tokenizer_kwargs:
                raise ValueError(f"tokenizer_kwargs may not set {key!r} (the pipeline decides it)")
        return {"top_k": top_k or 5, "target_ids": None if targets is None else self.target_ids(targets),
                "tokenizer_kwargs": tokenizer_kwargs}

    def __call__(self, inputs, **kwargs):
        outputs = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            return outputs[0]
        return outputs

    def target_ids(self, targets) -> np.ndarray:
        """Target words -> vocabulary ids (a word not in the vocabulary stands for its first token, with a warning)."""
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            check_text(target, "a target")
            if target in vocab:
                ids.append(vocab[target])
                continue
            pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                    return_token_type_ids=False, max_length=1, truncation=True)["input_ids"]
            if not pieces:
                logger.warning("The specified target token `%s` does not exist in the model vocabulary. We cannot "
                               "replace it with anything meaningful, ignoring it", target)
                continue
            logger.warning("The specified target token `%s` does not exist in the model vocabulary. Replacing with "
                           "`%s`.", target, self.tokenizer.convert_ids_to_tokens(pieces[0]))
            ids.append(pieces[0])
        if not ids:
            raise ValueError("At least one target must be provided when passed.")
        return np.array(list(set(ids)))

    def encode(self, items, params):
        texts = [check_text(text) for text in items]
        options = {"truncation": None, **params["tokenizer_kwargs"]}
        encoded = self.tokenizer(texts, return_token_type_ids=self.takes_token_types(), **options)
        windows = windows_from(encoded)
        mask_id = self.tokenizer.mask_token_id
        for text, window in zip(texts, windows):
            if mask_id not in window["input_ids"]:
                raise ValueError(f"fill-mask: No mask_token ({self.tokenizer.mask_token}) found on the input "
                                 f"{text[:60]!r}")
        self.check_lengths(windows, "pass tokenizer_kwargs={'truncation': True} to cut long texts")
        return [[window] for window in windows]

    def forward(self, batch):
        """Probabilities at the mask positions only ((masks, vocab) per window), not the whole (B, T, vocab)."""
        import torch

        inputs = self.model_inputs(batch)
        logits = self.model(**inputs)["logits"]
        rows, positions = torch.nonzero(inputs["input_ids"] == self.tokenizer.mask_token_id, as_tuple=True)
        probs = logits[rows, positions].softmax(dim=-1).float().cpu()  # (masks in the batch, vocab)
        return [{"probs": probs[rows == row], "positions": positions[rows == row].tolist()}
                for row in range(len(batch))]

    def postprocess(self, item, windows, params):
        import torch

        window = windows[0]
        probs, target_ids = window.outputs["probs"], params["target_ids"]
        top_k = min(params["top_k"], len(target_ids)) if target_ids is not None else params["top_k"]
        if target_ids is not None:
            probs = probs[..., torch.as_tensor(target_ids)]
        values, predictions = probs.topk(top_k)
        single_mask = values.shape[0] == 1
        input_ids = np.array(window["input_ids"])
        result = []
        for position, row_values, row_predictions in zip(window.outputs["positions"], values.tolist(),
                                                         predictions.tolist()):
            row = []
            for score, prediction in zip(row_values, row_predictions):
                token = int(target_ids[prediction]) if target_ids is not None else prediction
                tokens = input_ids.copy()
                tokens[position] = token
                tokens = tokens[tokens != self.tokenizer.pad_token_id]
                # other masks stay visible in the sequence when there are several (special tokens kept then)
                sequence = self.tokenizer.decode(tokens, skip_special_tokens=single_mask)
                row.append({"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                            "sequence": sequence})
            result.append(row)
        return result[0] if single_mask else result
