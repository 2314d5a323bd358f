"""Text generation: GenerationConfig, generate() (greedy / sampling / beam search) and streamers.

`import leanformers.generation` does not import torch: the search module loads on first use of `generate`.
"""
from .config import GenerationConfig
from .streamers import TextIteratorStreamer, TextStreamer

__all__ = ["GenerationConfig", "GenerateOutput", "generate", "prepare_generation_config", "model_generation_config",
           "TextStreamer", "TextIteratorStreamer"]
_IN_SEARCH = ("generate", "GenerateOutput", "prepare_generation_config", "model_generation_config")


def __getattr__(name):
    if name in _IN_SEARCH:
        from . import search
        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
