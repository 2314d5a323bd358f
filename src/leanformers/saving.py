"""A model -> a folder transformers loads: config.json, weights in transformers' checkpoint names and layout,
generation_config.json.

The reverse of loading.py: our names -> transpose back what the checkpoint stores transposed -> the spec's `unconvert`
(the inverse of its `convert`) -> the spec's renames read backwards (a spec's `save_renames` picks the checkpoint name
where several map to one of ours) -> the base prefix of the head class. Tensors that share storage are written once,
under the first name (transformers omits tied weights such as the output projection the same way); above
`max_shard_size` the weights go into numbered shards with an index, as transformers writes them.
"""
from __future__ import annotations

import json
import os
import re
from functools import cache

import torch

from .loading import _apply, _compile

WEIGHTS = {True: ("model.safetensors", "model.safetensors.index.json"),
           False: ("pytorch_model.bin", "pytorch_model.bin.index.json")}
_UNITS = {"KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40,
          "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12, "B": 1}
TRANSFORMERS_VERSION = "4.57.6"  # the version whose checkpoint layout this writes


# ---------------------------------------------------------------- our names -> checkpoint names
@cache
def _inverse(templates: tuple[tuple[str, str], ...]):
    """Each of our templates -> the first checkpoint template that maps onto it (longest of ours first)."""
    first = {}
    for source, target in templates:
        first.setdefault(target, source)
    return _compile(tuple((target, source) for target, source in first.items()))


def base_prefix(spec, task: str) -> str:
    """'bert.' inside BertForMaskedLM; '' for the base model and for head classes that keep the base modules at
    the top (T5ForConditionalGeneration: `spec.unprefixed_tasks`)."""
    if task == "base" or task in spec.unprefixed_tasks or not spec.base_prefix:
        return ""
    return spec.base_prefix + "."


def to_checkpoint(spec, state_dict: dict, config, task: str = "base") -> tuple[dict, list[str]]:
    """Our state_dict ('model.*', 'head.*') -> transformers' names and layout; returns (checkpoint, names that have
    no checkpoint name)."""
    state_dict = _transpose_back(spec, state_dict)
    if spec.unconvert is not None:
        state_dict = spec.unconvert(state_dict, config, task)
    elif hasattr(spec.convert, "inverse"):  # fused.SplitRows: the parts joined back into the checkpoint's tensor
        state_dict = spec.convert.inverse(state_dict, config)
    checkpoint, unnamed = {}, []
    names = checkpoint_names(spec, state_dict, config, task)
    for name, tensor in state_dict.items():
        if names[name] is None:
            unnamed.append(name)
            continue
        checkpoint[names[name]] = tensor
    return checkpoint, unnamed


def checkpoint_names(spec, names, config, task: str = "base") -> dict[str, str | None]:
    """Our parameter names ('model.*', 'head.*') -> transformers' name for each in this task's class
    ('head.out.weight' -> 'classifier.weight'), or None where the spec has no name for it."""
    extra = spec.save_renames(config) if spec.save_renames else {}
    base = _inverse(tuple({**extra, **spec.renames}.items()))  # extra's names first: they win
    head_names = dict(spec.task_head_renames.get(task, {}))  # the task's own names first: they win
    for source, target in spec.head_renames.items():
        head_names.setdefault(source, target)
    head = _inverse(tuple(head_names.items()))
    prefix = base_prefix(spec, task)
    out = {}
    for name in names:
        where, _, inner = name.partition(".")
        theirs = _apply(base if where == "model" else head, inner) if where in ("model", "head") else None
        out[name] = None if theirs is None else (prefix if where == "model" else "") + theirs
    return out


def _transpose_back(spec, state_dict):
    if not spec.transpose:
        return state_dict
    patterns = _compile(tuple((t, t) for t in spec.transpose))
    return {k: v.t() if v.dim() == 2 and _apply(patterns, k.split(".", 1)[1]) is not None else v
            for k, v in state_dict.items()}


def checkpoint_state_dict(model) -> dict:
    """The tensors transformers would save for `model`: its checkpoint names, each shared tensor once (the tied
    output projection omitted), in checkpoint layout."""
    state_dict = _deduplicated(model)
    checkpoint, unnamed = to_checkpoint(type(model).spec, state_dict, model.config, type(model).task)
    if unnamed:
        raise ValueError(f"{type(model).__name__}: no checkpoint name for {unnamed[:5]} (the spec's renames lack "
                         "them); cannot save in transformers' layout")
    return checkpoint


def _deduplicated(model) -> dict:
    """state_dict without the tied names (model.tied_weights()) and without second names of one storage."""
    tied = set(model.tied_weights())
    seen, out = set(), {}
    for name, tensor in model.state_dict().items():
        if name in tied:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = tensor
    return out


# ---------------------------------------------------------------- files
def parse_size(size) -> int:
    """'5GB' -> 5 * 10**9, '200MiB' -> 200 * 2**20, an int stays as it is (bytes), as transformers reads them."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(size).upper())
    if m is None:
        raise ValueError(f"max_shard_size={size!r} is not a size: use an int (bytes) or e.g. '5GB', '500MB', '2GiB'")
    return int(float(m[1]) * _UNITS[m[2] or "B"])


def shard(checkpoint: dict, max_bytes: int) -> list[dict]:
    """Consecutive tensors grouped into shards of at most max_bytes (a larger tensor gets a shard of its own)."""
    shards, current, size = [], {}, 0
    for name, tensor in checkpoint.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    return shards + [current] if current or not shards else shards


def write_weights(checkpoint: dict, folder: str, safe_serialization: bool = True, max_shard_size="5GB") -> list[str]:
    """Write the weights (one file, or shards + index); returns the file names written."""
    single, index_name = WEIGHTS[safe_serialization]
    _remove_stale_weights(folder)
    checkpoint = {k: v.detach().contiguous().cpu() for k, v in checkpoint.items()}
    shards = shard(checkpoint, parse_size(max_shard_size))
    stem, ext = single.rsplit(".", 1)
    names = [single] if len(shards) == 1 else [f"{stem}-{i:05d}-of-{len(shards):05d}.{ext}"
                                               for i in range(1, len(shards) + 1)]
    for name, part in zip(names, shards):
        _write_file(part, os.path.join(folder, name), safe_serialization)
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in checkpoint.values())
        index = {"metadata": {"total_size": total},
                 "weight_map": {k: name for name, part in zip(names, shards) for k in part}}
        with open(os.path.join(folder, index_name), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")
        names.append(index_name)
    return names


def _write_file(tensors: dict, path: str, safe: bool):
    tmp = path + ".tmp"
    if safe:
        from safetensors.torch import save_file

        save_file(_own_storage(tensors), tmp, metadata={"format": "pt"})
    else:
        torch.save(tensors, tmp)
    os.replace(tmp, path)  # a reader never sees a half-written file


def _own_storage(tensors: dict) -> dict:
    """safetensors refuses tensors that share memory (views, a table stored under two names): copy those."""
    seen, out = set(), {}
    for name, tensor in tensors.items():
        storage = tensor.untyped_storage()
        whole = storage.nbytes() == tensor.numel() * tensor.element_size()
        out[name] = tensor if whole and storage.data_ptr() not in seen else tensor.clone()
        seen.add(storage.data_ptr())
    return out


def _remove_stale_weights(folder: str):
    """Weights of an earlier save (other shard counts, the other format) would be read alongside the new ones."""
    pattern = re.compile(r"^(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)(\.index\.json)?$")
    for name in os.listdir(folder):
        if pattern.match(name):
            os.remove(os.path.join(folder, name))


# ---------------------------------------------------------------- config
def config_dict(model) -> dict:
    """config.json as transformers writes it: the config's keys, plus architectures, model_type and torch_dtype."""
    d = _plain(model.config.to_dict())
    d["architectures"] = [type(model).__name__]
    if type(model).spec.model_type:
        d["model_type"] = type(model).spec.model_type
    d["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    d.pop("dtype", None)
    d["transformers_version"] = TRANSFORMERS_VERSION
    return d


def _plain(value):
    """Nested configs (EncoderDecoderModel's halves) as dicts; id2label keys as strings (JSON)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return value


def save_pretrained(model, save_directory, *, safe_serialization: bool = True, max_shard_size="5GB",
                    is_main_process: bool = True, state_dict: dict | None = None, push_to_hub: bool = False,
                    **unused) -> list[str]:
    """Write `model` to `save_directory` as transformers' save_pretrained does; returns the file names written.
    `state_dict` (our names, e.g. from model.state_dict()) replaces the model's own tensors."""
    if push_to_hub:
        raise_hub_unreachable()
    folder = os.fspath(save_directory)
    if os.path.isfile(folder):
        raise ValueError(f"save_pretrained: {folder!r} is a file; pass a folder")
    os.makedirs(folder, exist_ok=True)
    if not is_main_process:
        return []
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_dict(model), f, indent=2, sort_keys=True)
        f.write("\n")
    written = ["config.json"]
    if model.can_generate():
        generation_config = getattr(model, "generation_config", None)
        if generation_config is None:  # a model built with Model(config): its config's generation fields
            from .generation import GenerationConfig  # generation sits above saving in the import order

            generation_config = GenerationConfig.for_model(model.config)
        generation_config.save_pretrained(folder)
        written.append("generation_config.json")
    if state_dict is not None:
        checkpoint, unnamed = to_checkpoint(type(model).spec, state_dict, model.config, type(model).task)
        if unnamed:
            raise ValueError(f"save_pretrained: state_dict names {unnamed[:5]} are not this model's")
    else:
        checkpoint = checkpoint_state_dict(model)
    return written + write_weights(checkpoint, folder, safe_serialization, max_shard_size)


def raise_hub_unreachable(*args, **kwargs):
    """push_to_hub: this library works offline; the Hugging Face Hub cannot be reached from it."""
    raise RuntimeError("push_to_hub is not supported: leanformers does not upload to the Hugging Face Hub (it is out "
                       "of reach here). Save with model.save_pretrained(folder) and upload the folder with "
                       "`huggingface-cli upload` where the Hub is reachable.")
