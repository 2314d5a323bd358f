"""pipeline(task, model, ...): transformers 4.57's pipelines, batched across inputs.

A task names a module, its pipeline class, the Auto class that loads a model for it and transformers' default model.
"""
from __future__ import annotations

import importlib
import os
import re

from .base import Pipeline

# task -> (module, class, model head for AutoModelFor*, transformers 4.57's default model id)
TASKS = {
    "text-classification": ("text_classification", "TextClassificationPipeline", "sequence_classification",
                            "distilbert/distilbert-base-uncased-finetuned-sst-2-english"),
    "token-classification": ("token_classification", "TokenClassificationPipeline", "token_classification",
                             "dbmdz/bert-large-cased-finetuned-conll03-english"),
    "question-answering": ("question_answering", "QuestionAnsweringPipeline", "question_answering",
                           "distilbert/distilbert-base-cased-distilled-squad"),
    "fill-mask": ("fill_mask", "FillMaskPipeline", "masked_lm", "distilbert/distilroberta-base"),
    "feature-extraction": ("feature_extraction", "FeatureExtractionPipeline", "base", None),
    "zero-shot-classification": ("zero_shot", "ZeroShotClassificationPipeline", "sequence_classification",
                                 "facebook/bart-large-mnli"),
    "text-generation": ("text_generation", "TextGenerationPipeline", "causal_lm", "openai-community/gpt2"),
    "text2text-generation": ("text2text", "Text2TextGenerationPipeline", "seq2seq_lm", "google-t5/t5-base"),
    "summarization": ("text2text", "SummarizationPipeline", "seq2seq_lm", "sshleifer/distilbart-cnn-12-6"),
    "translation": ("text2text", "TranslationPipeline", "seq2seq_lm", "google-t5/t5-base"),
}
AUTO_CLASSES = {"base": "AutoModel", "sequence_classification": "AutoModelForSequenceClassification",
                "token_classification": "AutoModelForTokenClassification", "masked_lm": "AutoModelForMaskedLM",
                "question_answering": "AutoModelForQuestionAnswering", "causal_lm": "AutoModelForCausalLM",
                "seq2seq_lm": "AutoModelForSeq2SeqLM"}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
_TRANSLATION = re.compile(r"translation_(\w+)_to_(\w+)$")
# architecture-name suffix -> task, for pipeline(model=...) without a task
_SUFFIX_TASKS = {"ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
                 "ForQuestionAnswering": "question-answering", "ForMaskedLM": "fill-mask",
                 "ForCausalLM": "text-generation", "LMHeadModel": "text-generation",
                 "ForConditionalGeneration": "text2text-generation", "MTModel": "translation",
                 "Model": "feature-extraction"}


def supported_tasks() -> list[str]:
    return sorted([*TASKS, *ALIASES, "translation_XX_to_YY"])


def resolve_task(task: str) -> str:
    """A task name or alias -> the canonical task (translation_xx_to_yy -> translation)."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a str, not {type(task).__name__}")
    task = ALIASES.get(task, task)
    if task in TASKS:
        return task
    if _TRANSLATION.match(task):
        return "translation"
    raise KeyError(f"Unknown task {task!r}; available tasks: {', '.join(supported_tasks())}")


def pipeline(task: str | None = None, model=None, tokenizer=None, device=None, dtype=None, batch_size: int = 1,
             *, config=None, revision=None, token=None, model_kwargs=None, torch_dtype=None, use_fast=True,
             trust_remote_code=None, framework=None, **kwargs) -> Pipeline:
    """Build the pipeline for `task` from a model repo id, folder or loaded model (and optional tokenizer)."""
    if task is None and model is None:
        raise RuntimeError("Impossible to instantiate a pipeline without either a task or a model being specified.")
    if framework not in (None, "pt"):
        raise ValueError(f"leanformers runs PyTorch models only (framework={framework!r})")
    where = {"revision": revision, "token": token}
    device_map = kwargs.pop("device_map", None)
    if device is None and device_map not in (None, "auto"):  # one device here: a device_map names it
        device = device_map
    name = ALIASES.get(task, task) if task is not None else infer_task(model, where)
    task = resolve_task(name)
    module_name, class_name, head, default_model = TASKS[task]
    if model is None:
        model = default_model
        if model is None:
            raise ValueError(f"the {task} pipeline has no default model; pass model=")
    model_kwargs = dict(model_kwargs or {})
    if config is not None:  # a Config, or the folder / repo id of one
        from ..config import Config

        model_kwargs["config"] = config if isinstance(config, Config) else Config.from_pretrained(config, **where)
    gguf_file = kwargs.pop("gguf_file", None)
    if gguf_file is not None:  # a GGUF file holds the weights and the tokenizer
        model_kwargs["gguf_file"] = gguf_file
    quantization = kwargs.pop("quantization", None)
    if quantization is not None:  # loaded here: from_pretrained quantizes; given a model: quantized in place
        model_kwargs["quantization"] = quantization
    loaded_here = isinstance(model, (str, os.PathLike))
    if loaded_here:
        model = load_model(os.fspath(model), head, task, dtype if dtype is not None else torch_dtype, where,
                           model_kwargs, default=model == default_model)
    elif quantization is not None and getattr(model, "quantization_report", None) is None:
        model.quantize(quantization)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        gguf = {"gguf_file": model_kwargs["gguf_file"]} if "gguf_file" in model_kwargs and tokenizer is None else {}
        tokenizer = load_tokenizer(tokenizer, model, {**where, **gguf})
    if name == "translation":
        name = _translation_task(model)
    cls = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    return cls(model=model, tokenizer=tokenizer, task=name, device=device, dtype=None if loaded_here else dtype,
               batch_size=batch_size, **kwargs)


def _translation_task(model) -> str:
    """A bare "translation" takes the checkpoint's first translation_xx_to_yy task, as transformers does."""
    import warnings

    for key in model.config.get("task_specific_params") or {}:
        if key.startswith("translation"):
            warnings.warn(f'"translation" task was used, instead of "translation_XX_to_YY", defaulting to "{key}"',
                          UserWarning)
            return key
    return "translation"


def load_model(name: str, head: str, task: str, dtype, where: dict, model_kwargs: dict, default: bool):
    from ..modeling import auto

    auto_class = getattr(auto, AUTO_CLASSES[head])
    try:
        return auto_class.from_pretrained(name, dtype=dtype, **where, **model_kwargs)
    except (FileNotFoundError, OSError) as err:
        if default:
            raise OSError(f"no model given for {task!r} and its default model {name!r} could not be loaded "
                          f"(offline, or not in the Hugging Face cache): {err}. Pass model=") from None
        raise


def load_tokenizer(tokenizer, model, where: dict):
    from ..tokenization import AutoTokenizer

    source = os.fspath(tokenizer) if tokenizer is not None else model.config.get("_name_or_path")
    if not source:
        raise ValueError("the model was not loaded from a folder or repo id, so its tokenizer cannot be found; "
                         "pass tokenizer=")
    return AutoTokenizer.from_pretrained(source, **{k: v for k, v in where.items() if v is not None})


def infer_task(model, where: dict) -> str:
    """pipeline(model=...) without a task: read the task from the checkpoint's architecture name."""
    if isinstance(model, str):
        from ..config import Config

        architectures = Config.from_pretrained(model, **where).get("architectures") or []
    else:
        architectures = [type(model).__name__]
    for name in architectures:
        for suffix, task in _SUFFIX_TASKS.items():
            if name.endswith(suffix):
                return task
    raise ValueError(f"cannot infer the task from the model's architectures {architectures}; pass task= (one of "
                     f"{', '.join(supported_tasks())})")


__all__ = ["Pipeline", "pipeline", "supported_tasks", "TASKS"]
