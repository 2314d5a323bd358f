"""AutoModel / AutoModelFor*: config.model_type -> the architecture's Spec, the Auto class's task -> the head."""
from __future__ import annotations

import importlib

from ..config import Config
from .archs import ARCHITECTURES
from .heads import TASKS
from .model import model_class


def spec_for(model_type: str):
    if model_type not in ARCHITECTURES:
        raise ValueError(f"unknown model_type {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}")
    module = importlib.import_module(f".archs.{ARCHITECTURES[model_type]}", __package__)
    specs = getattr(module, "SPECS", None) or {module.SPEC.model_type: module.SPEC}
    return specs.get(model_type) or module.SPEC


def all_classes() -> dict[str, type]:
    """Every concrete class name users may import (BertModel, GPT2LMHeadModel, ...) -> class."""
    classes = {}
    for model_type in ARCHITECTURES:
        spec = spec_for(model_type)
        for task in spec.tasks:
            cls = model_class(spec, task)
            classes.setdefault(cls.__name__, cls)
    return classes


class _AutoModel:
    task = "base"

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is not instantiated: use .from_pretrained(...) or .from_config(config)")

    @classmethod
    def model_class(cls, config: Config) -> type:
        model_type = config.get("model_type")
        if model_type is None:
            raise ValueError("config.json has no 'model_type'; cannot tell which architecture to build")
        return model_class(spec_for(model_type), cls.task)

    @classmethod
    def from_pretrained(cls, name_or_path, *args, config=None, revision=None, cache_dir=None, token=None,
                        local_files_only=False, subfolder="", gguf_file=None, **kwargs):
        where = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        if config is None and gguf_file is None:
            config_keys = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KWARGS}
            config = Config.from_pretrained(name_or_path, subfolder=subfolder, **where, **config_keys)
        elif config is None:
            from ..gguf import gguf_config  # only the config: cheap

            config = Config.from_dict(gguf_config(name_or_path, gguf_file, **where))
        return cls.model_class(config).from_pretrained(name_or_path, *args, config=config, subfolder=subfolder,
                                                       gguf_file=gguf_file, **where, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs):
        if not isinstance(config, Config):
            config = Config.from_dict(config.to_dict() if hasattr(config, "to_dict") else dict(config))
        return cls.model_class(config).from_config(config, **kwargs)


# config keys users pass straight to from_pretrained (transformers applies them to the config)
_CONFIG_KWARGS = {"num_labels", "id2label", "label2id", "problem_type", "output_hidden_states", "output_attentions",
                  "is_decoder", "add_cross_attention", "tie_word_embeddings", "pad_token_id"}


def _auto(task: str) -> type:
    return type(f"AutoModel{TASKS[task] if task != 'base' else ''}", (_AutoModel,), {"task": task})


AutoModel = _auto("base")
AutoModelForMaskedLM = _auto("masked_lm")
AutoModelForSequenceClassification = _auto("sequence_classification")
AutoModelForTokenClassification = _auto("token_classification")
AutoModelForQuestionAnswering = _auto("question_answering")
AutoModelForMultipleChoice = _auto("multiple_choice")
AutoModelForCausalLM = _auto("causal_lm")
AutoModelForPreTraining = _auto("pretraining")
AutoModelForSeq2SeqLM = _auto("seq2seq_lm")
AutoModelForSeq2SeqLM.__name__ = "AutoModelForSeq2SeqLM"
