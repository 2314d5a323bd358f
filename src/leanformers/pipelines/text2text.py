"""text2text-generation, summarization and translation with encoder-decoder models (transformers 4.57's pipelines,
which transformers 5 removed): inputs, outputs, defaults (max_new_tokens=256, num_beams=4) and warnings as 4.57.

`translation_xx_to_yy` tasks pick the checkpoint's task_specific_params (T5's "translate English to German: "
prefix); multilingual tokenizers (mBART, mBART-50, M2M100) take `src_lang` / `tgt_lang` and force the target
language as the first generated token. Batches are right-padded and grouped by length.
"""
from __future__ import annotations

import logging
import warnings

from .base import check_text
from .text_generation import GeneratingPipeline

logger = logging.getLogger(__name__)


class Text2TextGenerationPipeline(GeneratingPipeline):
    task = "text2text-generation"
    heads = ("seq2seq_lm",)
    default_generation = {"max_new_tokens": 256, "num_beams": 4}
    return_name = "generated"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_pad_token()

    def parameters(self, return_tensors=None, return_text=None, return_type=None, clean_up_tokenization_spaces=None,
                   truncation=None, stop_sequence=None, **generate_kwargs):
        if return_tensors is not None and return_type is None:
            return_type = "tensors" if return_tensors else "text"
        return_type = str(getattr(return_type, "name", return_type) or "text").lower()
        if return_type not in ("tensors", "text"):
            raise ValueError(f"return_type must be 'text' or 'tensors', not {return_type!r}")
        if stop_sequence is not None:
            stop_ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if len(stop_ids) > 1:
                warnings.warn("Stopping on a multiple token sequence is not yet supported on transformers. The first "
                              "token of the stop sequence will be used as the stop sequence string in the interim.")
            generate_kwargs["eos_token_id"] = stop_ids[0]
        return {"return_type": return_type, "clean_up": bool(clean_up_tokenization_spaces),
                "truncation": truncation, "generate_kwargs": generate_kwargs}

    def __call__(self, *args, **kwargs):
        if not args:
            raise ValueError(f"{self.task} needs an input text (or a list of texts)")
        inputs = args[0] if len(args) == 1 else list(args)
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs) and all(len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def run(self, items, params):
        if not items:
            return []
        texts = [check_text(item) for item in items]
        prompts, extra = self.encode_inputs(texts, params)
        generate_kwargs = {**extra, **params["generate_kwargs"]}
        for prompt in prompts:
            self.check_inputs(len(prompt), generate_kwargs.get("min_length", self.generation_config.min_length),
                              generate_kwargs.get("max_length", self.generation_config.max_length))
        return [self.records(rows, params) for rows in self.generate_groups(prompts, generate_kwargs)]

    def encode_inputs(self, texts, params) -> tuple[list[list[int]], dict]:
        """Texts -> encoder token ids (and generate() options the encoding implies, e.g. a forced target language)."""
        prefix = self.prefix or ""
        return self.tokenize([prefix + text for text in texts], params), {}

    def tokenize(self, texts, params) -> list[list[int]]:
        truncation = params["truncation"]
        limit = self.max_length()
        encoded = self.tokenizer(texts, truncation=truncation, max_length=limit if truncation else None,
                                 return_token_type_ids=False, return_attention_mask=False)["input_ids"]
        for ids in encoded:
            if limit is not None and len(ids) > limit:
                raise ValueError(f"an input has {len(ids)} tokens but the encoder takes at most {limit}; pass "
                                 "truncation=True to cut it")
        return encoded

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        """Subclasses warn about lengths that make little sense for their task, as transformers does."""

    def records(self, rows: list[list[int]], params) -> list[dict]:
        if params["return_type"] == "tensors":
            import torch

            return [{f"{self.return_name}_token_ids": torch.tensor(row)} for row in rows]
        return [{f"{self.return_name}_text": self.tokenizer.decode(row, skip_special_tokens=True,
                                                                    clean_up_tokenization_spaces=params["clean_up"])}
                for row in rows]


class SummarizationPipeline(Text2TextGenerationPipeline):
    task = "summarization"
    return_name = "summary"

    def check_inputs(self, input_length, min_length, max_length):
        if max_length < min_length:
            logger.warning(f"Your min_length={min_length} must be inferior than your max_length={max_length}.")
        if input_length < max_length:
            logger.warning(f"Your max_length is set to {max_length}, but your input_length is only {input_length}. "
                           "Since this is a summarization task, where outputs shorter than the input are typically "
                           "wanted, you might consider decreasing max_length manually, e.g. summarizer('...', "
                           f"max_length={input_length // 2})")


class TranslationPipeline(Text2TextGenerationPipeline):
    task = "translation"
    return_name = "translation"

    def parameters(self, src_lang=None, tgt_lang=None, **kwargs):
        params = super().parameters(**kwargs)
        if src_lang is None and tgt_lang is None:
            parts = self.task.split("_")
            if len(parts) == 4:  # translation_en_to_fr
                src_lang, tgt_lang = parts[1], parts[3]
        return {**params, "src_lang": src_lang, "tgt_lang": tgt_lang}

    def check_inputs(self, input_length, min_length, max_length):
        if input_length > 0.9 * max_length:
            logger.warning(f"Your input_length: {input_length} is bigger than 0.9 * max_length: {max_length}. You "
                           "might consider increasing your max_length manually, e.g. translator('...', max_length=400)")

    def encode_inputs(self, texts, params):
        from ..tokenization.families import family_of

        family = family_of(self.tokenizer.family)
        if not family.language_codes:
            return super().encode_inputs(texts, params)
        src_lang, tgt_lang = params["src_lang"], params["tgt_lang"]
        if src_lang is None or tgt_lang is None:
            raise ValueError("Translation requires a `src_lang` and a `tgt_lang` for this model (a multilingual "
                             f"{self.tokenizer.family}); e.g. src_lang={family.language_codes[0]!r}")
        target = family.language_token.format(tgt_lang)
        if target not in self.tokenizer.get_vocab():
            raise ValueError(f"unknown tgt_lang {tgt_lang!r}: the tokenizer has no token {target!r}")
        self.tokenizer.src_lang = src_lang  # raises a clear error for an unknown code
        return self.tokenize(texts, params), {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids(target)}
