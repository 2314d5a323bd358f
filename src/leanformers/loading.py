"""Checkpoint files -> a ready model.

read (safetensors memory-mapped, .bin with weights_only=True) -> rename to our names (the spec's table) -> transpose
what was stored transposed -> check shapes -> assign into a model built on the meta device (no wasted random init)
-> initialise only what the checkpoint lacked, and say so -> tie the output projection -> dtype -> eval mode.
The model comes back trainable (requires_grad=True) in eval() mode, as transformers returns it; inference fast paths
key on torch.is_grad_enabled() (no_grad / inference_mode), not on frozen parameters.
"""
from __future__ import annotations

import contextlib
import logging
import pickle
import re
from functools import lru_cache

import torch
from torch import nn

from . import hub
from .config import Config, apply_model_kwargs
from .modeling.init import init_weights

logger = logging.getLogger("leanformers")

# buffers old checkpoints carry that no model needs (positions, causal masks, rotary frequencies)
_IGNORED = re.compile(r"(^|\.)(position_ids|inv_freq|masked_bias|attn\.bias|attention\.bias|_float_tensor)$")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------- reading
def read_checkpoint(paths: list[str]) -> dict[str, torch.Tensor]:
    state_dict = {}
    for path in paths:
        state_dict.update(_read_safetensors(path) if path.endswith(".safetensors") else _read_bin(path))
    return state_dict


def _read_safetensors(path):
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:  # tensors stay memory-mapped until used
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ValueError(f"{path} is not a valid safetensors file (corrupt or truncated?): {err}") from None


def _read_bin(path):
    try:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds more than plain weights; refusing to unpickle it (weights_only=True): "
                         f"{str(err).splitlines()[0]}") from None
    except Exception as err:
        raise ValueError(f"{path} could not be read as a PyTorch checkpoint: {err}") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} is not a flat mapping of parameter names to tensors")
    return state_dict


# ---------------------------------------------------------------- renaming
@lru_cache(maxsize=None)
def _compile(templates: tuple[tuple[str, str], ...]):
    """'encoder.layer.{}.output.dense' -> regex with one group per {}; longest (most specific) first."""
    compiled = []
    for source, target in sorted(templates, key=lambda t: -len(t[0])):
        pattern = re.escape(source).replace(r"\{\}", r"(\d+)")
        compiled.append((re.compile(f"^{pattern}(?=\\.|$)"), target))
    return compiled


def _apply(compiled, key):
    for pattern, target in compiled:
        m = pattern.match(key)
        if m:
            return target.format(*m.groups()) + key[m.end():]
    return None


def _legacy(key: str) -> str:
    if key.endswith("LayerNorm.gamma"):
        return key[:-5] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[:-4] + "bias"
    return key


def to_our_names(spec, checkpoint: dict, task: str = "base") -> tuple[dict, list[str]]:
    """Checkpoint names -> ours ('model.*' for the base, 'head.*' for the head); returns (renamed, unexpected)."""
    base = _compile(tuple(spec.renames.items()))
    head = _compile(tuple({**spec.head_renames, **spec.task_head_renames.get(task, {})}.items()))
    prefix = spec.base_prefix + "." if spec.base_prefix else ""
    ours, unexpected = {}, []
    for key, tensor in checkpoint.items():
        key = _legacy(key)
        name = None
        if prefix and key.startswith(prefix):
            inner = _apply(base, key[len(prefix):])
            name = "model." + inner if inner is not None else None
        if name is None:
            inner = _apply(head, key)
            name = "head." + inner if inner is not None else None
        if name is None:
            inner = _apply(base, key)  # a checkpoint saved from the base model has no prefix
            name = "model." + inner if inner is not None else None
        if name is None:
            if not _IGNORED.search(key):
                unexpected.append(key)
            continue
        ours.setdefault(name, tensor)
    return ours, unexpected


def convert_checkpoint(spec, checkpoint: dict, config, task: str = "base") -> tuple[dict, list[str]]:
    """Checkpoint tensors -> ours: renames, then the spec's convert hook, then transposes; and the unknown keys."""
    ours, unexpected = to_our_names(spec, checkpoint, task)
    if spec.convert is not None:
        ours = spec.convert(ours, config)
    return _transpose(spec, ours), unexpected


def _transpose(spec, state_dict):
    if not spec.transpose:
        return state_dict
    patterns = _compile(tuple((t, t) for t in spec.transpose))
    flipped = {k for k, v in state_dict.items() if _apply(patterns, k.split(".", 1)[1]) is not None and v.dim() == 2}
    # the transposed tensors are copies; copy the rest too, so that no tensor keeps the memory-mapped file alive:
    # a mapping left open would keep the pages the transposes read resident next to their copies (GPT-2-size: RSS
    # after loading 932 -> 758 MB)
    return {k: v.t().contiguous() if k in flipped else v.clone() if flipped else v for k, v in state_dict.items()}


def _checkpoint_name(cls, checkpoint, name: str) -> str:
    """The checkpoint key that became our `name` (for error messages; `name` itself if a convert hook made it)."""
    return next((key for key in checkpoint if name in to_our_names(cls.spec, {key: None}, cls.task)[0]), name)


# ---------------------------------------------------------------- initialising what the checkpoint lacks
def initialise(model: nn.Module, only_meta: bool = True, dtype=torch.float32) -> list[str]:
    """Give real storage to parameters still on the meta device (or to all), initialised as transformers does."""
    return init_weights(model, only_meta=only_meta, dtype=dtype)


@contextlib.contextmanager
def _no_random_init():
    """Skip torch's random init while a model is built on the meta device: its weights come from the checkpoint, and
    a meta-tensor init (Embedding's normal_) makes torch import its reference kernels first, ~1.9 s of cold start."""
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [cls.reset_parameters for cls in classes]
    for cls in classes:
        cls.reset_parameters = _skip
    try:
        yield
    finally:
        for cls, reset in zip(classes, saved):
            cls.reset_parameters = reset


def _skip(module):
    pass


# ---------------------------------------------------------------- the whole path
def resolve_dtype(dtype, config: Config, state_dict: dict):
    if dtype is None:
        return torch.float32  # transformers 4.x loads in float32 unless asked
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        named = config.get("torch_dtype") or config.get("dtype")
        if named in _DTYPES:
            return _DTYPES[named]
        floats = [t.dtype for t in state_dict.values() if t.is_floating_point()]
        return floats[0] if floats else torch.float32
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be a torch dtype, 'auto' or one of {sorted(_DTYPES)}; got {dtype!r}")


def load_pretrained(cls, name_or_path, *, config=None, dtype=None, torch_dtype=None, revision=None, cache_dir=None,
                    token=None, local_files_only=False, subfolder="", output_loading_info=False, device=None,
                    device_map=None, state_dict=None, gguf_file=None, ignore_mismatched_sizes=False,
                    attn_implementation=None, trust_remote_code=None, quantization=None, **config_overrides):
    where = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    quantization, quantized = _check_quantization(quantization, gguf_file), None
    if gguf_file is not None:
        from .gguf import load_gguf

        checkpoint = load_gguf(name_or_path, gguf_file, subfolder=subfolder, keep_quantized=quantization == "gguf",
                               **where)
        config = config or Config.from_dict(checkpoint.config)
        state_dict, quantized = checkpoint.state_dict, checkpoint.quantized
    if config is None:
        config = Config.from_pretrained(name_or_path, subfolder=subfolder, **where)
    config = apply_model_kwargs(config, config_overrides, cls.__name__)  # unknown keys: TypeError, as transformers
    if state_dict is None:
        state_dict = read_checkpoint(hub.resolve_weights(name_or_path, subfolder=subfolder, **where))
    model = build(cls, config, state_dict, dtype if dtype is not None else torch_dtype, ignore_mismatched_sizes,
                  source=str(name_or_path), quantized=quantized)
    if quantization not in (None, "gguf"):
        model.quantize(quantization)
        del state_dict
        _return_freed_memory()
    elif quantization == "gguf":  # kept quantized to save memory: do not keep the parsed file around either
        from .gguf import release_readers

        del checkpoint, state_dict, quantized
        release_readers()
        _return_freed_memory()
    model.config._name_or_path = str(name_or_path)
    if hasattr(model, "load_generation_config"):
        model.load_generation_config(name_or_path, **where)
    named_map = isinstance(device_map, (str, torch.device)) and device_map != "auto"
    target = device if device is not None else (device_map if named_map else None)
    if target is not None:
        model.to(target)
    if output_loading_info:
        return model, model.loading_info
    return model


def _check_quantization(quantization, gguf_file):
    if quantization is None:
        return None
    from .modeling.quant import check_quantization

    quantization = check_quantization(quantization)
    if quantization == "gguf" and gguf_file is None:
        raise ValueError("quantization='gguf' keeps a GGUF file's quantized tensors: it needs gguf_file=")
    return quantization


def _return_freed_memory():
    """Hand the heap that loading freed (float copies, re-packed blocks) back to the system: glibc keeps it mapped
    otherwise (measured: 50 MB of a SmolLM2 GGUF load's 390 MB resident). A no-op where malloc_trim is missing."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def build(cls, config, checkpoint, dtype, ignore_mismatched_sizes=False, source="the checkpoint", quantized=None):
    spec = cls.spec
    if config.get("model_type") not in (spec.model_type, None) and not getattr(spec, "accepts", None):
        logger.warning("loading a %s checkpoint into %s", config.get("model_type"), cls.__name__)
    dtype = resolve_dtype(dtype, config, checkpoint)
    with torch.device("meta"), _no_random_init():
        model = cls(config)
    ours, unexpected = convert_checkpoint(spec, checkpoint, config, cls.task)
    expected = model.state_dict()
    ties = model.tied_weights()
    mismatched = []
    for name in list(ours):
        if name not in expected:
            if not _IGNORED.search(name):  # a buffer the model computes (a rename kept it for saving)
                unexpected.append(_checkpoint_name(cls, checkpoint, name))  # report the name the checkpoint uses
            del ours[name]
        elif ours[name].shape != expected[name].shape:
            if not ignore_mismatched_sizes:
                raise ValueError(
                    f"{source}: weight {_checkpoint_name(cls, checkpoint, name)!r} (our {name!r}) has shape "
                    f"{tuple(ours[name].shape)} but the config "
                    f"({type(model).__name__}) expects {tuple(expected[name].shape)}; does config.json match the "
                    f"weights? (ignore_mismatched_sizes=True re-initialises such weights)")
            mismatched.append(name)
            del ours[name]
        elif ours[name].is_floating_point() and ours[name].dtype != dtype:
            ours[name] = ours[name].to(dtype)
    model.load_state_dict(ours, strict=False, assign=True)
    if quantized:  # GGUF tensors kept quantized replace their (meta) float modules before anything is initialised
        from .modeling.quant import _finish, place_gguf

        _finish(model, place_gguf(model, to_our_names(spec, quantized, cls.task)[0]))
    model.tie_weights()  # before initialising, so a tied output projection is not drawn at random for nothing
    missing = [n for n in initialise(model, dtype=dtype) if n not in ties]
    model.tie_weights()
    model.loading_info = {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}
    if missing:
        from .saving import checkpoint_names  # saving imports this module

        theirs = checkpoint_names(cls.spec, missing, config, cls.task)
        named = [theirs[n] or n for n in missing]  # transformers' names
        logger.warning("Some weights of %s were not initialized from %s and are newly initialized: %s\n"
                       "You should probably TRAIN this model on a down-stream task to be able to use it for "
                       "predictions and inference.", type(model).__name__, source, named)
    if unexpected:
        logger.warning("Some weights of %s were not used when initializing %s: %s", source, type(model).__name__,
                       unexpected)
    return model.eval()
