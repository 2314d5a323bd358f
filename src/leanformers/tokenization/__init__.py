"""Tokenizers with transformers' fast-tokenizer behaviour, on the `tokenizers` library (no torch import here)."""
from .classes import TOKENIZER_CLASSES
from .encoding import BatchEncoding
from .files import AutoTokenizer
from .tokenizer import Tokenizer

globals().update(TOKENIZER_CLASSES)  # BertTokenizer, BertTokenizerFast, GPT2TokenizerFast, ...
__all__ = ["AutoTokenizer", "BatchEncoding", "Tokenizer", *TOKENIZER_CLASSES]
