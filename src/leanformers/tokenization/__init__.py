"""Tokenizers with transformers' fast-tokenizer behaviour, on the `tokenizers` library (no torch import here)."""
from .encoding import BatchEncoding
from .files import AutoTokenizer
from .tokenizer import Tokenizer

__all__ = ["AutoTokenizer", "BatchEncoding", "Tokenizer"]
