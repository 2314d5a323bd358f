"""leanformers: the Hugging Face Transformers inference API, small and fast.

Importing this package is cheap: torch and the model code load on first use of a name that needs them.
"""
from .config import CONFIG_CLASSES, AutoConfig, Config  # noqa: F401  (public names)

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "AutoTokenizer": "tokenization", "Tokenizer": "tokenization", "BatchEncoding": "tokenization",
    "AutoModel": "modeling.auto", "AutoModelForMaskedLM": "modeling.auto",
    "AutoModelForSequenceClassification": "modeling.auto", "AutoModelForTokenClassification": "modeling.auto",
    "AutoModelForQuestionAnswering": "modeling.auto", "AutoModelForMultipleChoice": "modeling.auto",
    "AutoModelForCausalLM": "modeling.auto", "AutoModelForSeq2SeqLM": "modeling.auto",
    "AutoModelForPreTraining": "modeling.auto",
    "PreTrainedModel": "modeling.model",
    "GenerationConfig": "generation", "TextStreamer": "generation", "TextIteratorStreamer": "generation",
    "pipeline": "pipelines",
    **dict.fromkeys(["Trainer", "TrainingArguments", "EvalPrediction", "TrainerCallback", "EarlyStoppingCallback",
                     "TrainerState", "TrainerControl", "DataCollatorWithPadding", "DataCollatorForLanguageModeling",
                     "DataCollatorForTokenClassification", "DataCollatorForSeq2Seq", "default_data_collator",
                     "align_labels_with_tokens", "set_seed", "get_scheduler", "get_linear_schedule_with_warmup",
                     "get_cosine_schedule_with_warmup", "get_constant_schedule", "get_constant_schedule_with_warmup"],
                    "training"),
    **{name: "config" for name in CONFIG_CLASSES},  # BertConfig, GPT2Config, ... (no torch)
}
# transformers' tokenizer class names (BertTokenizerFast, GPT2Tokenizer, ...): entry points in tokenization.classes
_LAZY.update(dict.fromkeys((
    "PreTrainedTokenizerFast BertTokenizer BertTokenizerFast ElectraTokenizer ElectraTokenizerFast DistilBertTokenizer "
    "DistilBertTokenizerFast RobertaTokenizer RobertaTokenizerFast BartTokenizer BartTokenizerFast LongformerTokenizer "
    "LongformerTokenizerFast GPT2Tokenizer GPT2TokenizerFast AlbertTokenizer AlbertTokenizerFast T5Tokenizer "
    "T5TokenizerFast XLMRobertaTokenizer XLMRobertaTokenizerFast MBartTokenizer MBartTokenizerFast MBart50Tokenizer "
    "MBart50TokenizerFast MarianTokenizer M2M100Tokenizer LlamaTokenizer LlamaTokenizerFast GemmaTokenizer "
    "GemmaTokenizerFast Qwen2Tokenizer Qwen2TokenizerFast DebertaV2Tokenizer DebertaV2TokenizerFast MPNetTokenizer "
    "MPNetTokenizerFast").split(), "tokenization"))


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name[:1].isupper():  # concrete class names: BertForSequenceClassification, GPT2LMHeadModel, ...
        classes = importlib.import_module(".modeling.auto", __name__).all_classes()
        if name in classes:
            return classes[name]
    raise AttributeError(f"module 'leanformers' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
