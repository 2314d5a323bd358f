"""transformers' tokenizer class names (`BertTokenizerFast`, `GPT2Tokenizer`, `T5TokenizerFast`, ...) as thin entry
points to the one Tokenizer.

`BertTokenizerFast.from_pretrained(folder)` loads the folder as that class would, whatever the folder's
tokenizer_config.json names: the class's defaults (special tokens, returned keys) apply. A slow name (no "Fast")
builds from the legacy vocabulary files (vocab.txt, vocab.json + merges.txt, the SentencePiece model) and ignores a
tokenizer.json, as transformers' slow classes do. `BertTokenizer(vocab_file="vocab.txt")` builds from files directly.
Every entry point returns a `Tokenizer` (transformers' fast-tokenizer behaviour).
"""
from __future__ import annotations

import os

from .families import FAMILIES
from .files import AutoTokenizer, tokenizer_from_files
from .tokenizer import Tokenizer

# family -> whether transformers ships a fast class (Marian and M2M100 are slow-only)
_SLOW_ONLY = ("MarianTokenizer", "M2M100Tokenizer")


class NamedTokenizer:
    """Base of the named entry points; `class_name` is transformers' class, `slow` whether it reads legacy files."""

    class_name = "PreTrainedTokenizerFast"
    slow = False

    def __new__(cls, vocab_file=None, merges_file=None, tokenizer_file=None, *, tokenizer_object=None,
                **kwargs) -> Tokenizer:
        """`Class(vocab_file, [merges_file], tokenizer_file=..., tokenizer_object=..., **options)` -> Tokenizer."""
        kwargs.setdefault("tokenizer_class", cls.class_name)
        if tokenizer_object is not None:
            return Tokenizer(tokenizer_object, **kwargs)
        files = {"vocab_file": vocab_file, "merges_file": merges_file, "tokenizer_file": tokenizer_file}
        files = {key: os.fspath(path) for key, path in files.items() if path is not None}
        if cls.slow:
            files.pop("tokenizer_file", None)
        if not files:
            raise TypeError(f"{cls.__name__}() needs vocab_file (and merges_file for byte-level BPE), tokenizer_file "
                            f"or tokenizer_object; or use {cls.__name__}.from_pretrained(folder_or_repo_id)")
        return tokenizer_from_files(files, kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs) -> Tokenizer:
        """Load `name_or_path` as transformers' `{class_name}.from_pretrained` would (-> Tokenizer)."""
        kwargs["tokenizer_class"] = cls.class_name
        kwargs.pop("use_fast", None)
        return AutoTokenizer.from_pretrained(name_or_path, from_slow=cls.slow, **kwargs)


def _entry_point(name: str) -> type:
    slow = not name.endswith("Fast")
    return type(name, (NamedTokenizer,), {"class_name": name, "slow": slow, "__doc__": (
        f"transformers' `{name}`: `{name}.from_pretrained(folder_or_repo_id)` -> Tokenizer"
        + (" built from the legacy vocabulary files." if slow else "."))})


TOKENIZER_CLASSES: dict[str, type] = {"PreTrainedTokenizerFast": _entry_point("PreTrainedTokenizerFast")}
for _family in FAMILIES:
    if _family == "PreTrainedTokenizer":
        continue
    TOKENIZER_CLASSES[_family] = _entry_point(_family)
    if _family not in _SLOW_ONLY:
        TOKENIZER_CLASSES[_family + "Fast"] = _entry_point(_family + "Fast")
