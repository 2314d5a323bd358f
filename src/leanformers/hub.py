"""Repo id or local path -> local files. No torch here.

A checkpoint is named by a local folder, or by a Hub repo id that is looked up in the shared Hugging Face cache
(`HF_HOME` / `HF_HUB_CACHE`, `models--org--name/snapshots/<rev>/`) first and downloaded only when online.
`HF_HUB_OFFLINE=1` (or `local_files_only=True`) never touches the network.
"""
from __future__ import annotations

import json
import os
import re

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def is_offline(local_files_only: bool = False) -> bool:
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def resolve(
    name_or_path,
    filename: str,
    *,
    revision: str | None = None,
    required: bool = True,
    cache_dir: str | None = None,
    token=None,
    local_files_only: bool = False,
    subfolder: str = "",
) -> str | None:
    """Local path of `filename` from a folder or repo id; None (or FileNotFoundError if `required`) when absent."""
    name_or_path = os.fspath(name_or_path)
    check_inside("subfolder", subfolder)
    check_inside("filename", filename)
    check_inside("revision", revision)
    if subfolder:
        filename = f"{subfolder}/{filename}"
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{name_or_path!r} has no file {filename!r}")
        return None
    if os.path.isfile(name_or_path):
        if required:
            raise FileNotFoundError(f"{name_or_path!r} is a file; expected a folder holding {filename!r} or a repo id")
        return None
    if not _looks_like_repo_id(name_or_path):
        raise FileNotFoundError(f"{name_or_path!r} is neither an existing folder nor a valid Hugging Face repo id")

    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name_or_path, filename, cache_dir=cache_dir, revision=revision)
    if isinstance(cached, str):
        return cached
    cached_absent = cached is not None  # the cache records that the repo has no such file
    if cached_absent or is_offline(local_files_only):
        if required:
            where = "is recorded as absent in the cache" if cached_absent else "is not in the local Hugging Face cache"
            hint = "" if cached_absent else " and offline mode is on (HF_HUB_OFFLINE=1 or local_files_only=True)"
            raise FileNotFoundError(
                f"{filename!r} of {name_or_path!r} (revision {revision or 'main'}) {where}{hint}; "
                f"cache folder: {_cache_dir(cache_dir)}"
            )
        return None
    return _download(name_or_path, filename, revision, required, cache_dir, token)


def _download(repo_id, filename, revision, required, cache_dir, token):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token)
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{repo_id!r} (revision {revision or 'main'}) has no file {filename!r}") from None
        return None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{repo_id!r} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{repo_id!r} is not a local folder and no such repo exists on the Hub") from None
    except Exception as err:  # connection errors and friends
        if required:
            raise OSError(
                f"could not get {filename!r} of {repo_id!r}: {err.__class__.__name__}: {err}. "
                f"It is not in the local cache ({_cache_dir(cache_dir)}) either."
            ) from None
        return None


def _shard(name_or_path, index_path: str, shard: str, where: dict) -> str:
    """A shard named by an index sits beside it: a name that climbs out, or a shard that is missing, is refused."""
    try:
        check_inside("shard", shard)
    except ValueError:
        raise ValueError(f"{index_path} names shard {shard!r} outside its folder; refusing to read it") from None
    found = resolve(name_or_path, shard, required=False, **where)
    if found is None:
        raise FileNotFoundError(f"{index_path} names shard {shard!r}, but there is no such file")
    return found


def _looks_like_repo_id(name: str) -> bool:
    """The Hub's rule: [namespace/]name, letters, digits, '-', '_', '.', no '--' or '..', no leading/trailing - or ."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(_REPO_PART.fullmatch(p) and "--" not in p and ".." not in p for p in parts)


_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")


def check_inside(argument: str, value) -> None:
    """A subfolder, file name or revision is a path below the folder or the repo's cache entry: refuse an absolute
    path and any '..' step, so that no argument (nor a name read from an index file) reaches outside."""
    if not value:
        return
    value = os.fspath(value)
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\", "~")) or os.path.isabs(value) or ".." in parts:
        raise ValueError(f"{argument}={value!r} must stay inside the folder or repo (no absolute path, no '..')")


def _cache_dir(cache_dir):
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def load_json(name_or_path, filename, required=True, **kwargs) -> dict | None:
    path = resolve(name_or_path, filename, required=required, **kwargs)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None


def resolve_weights(name_or_path, **kwargs) -> list[str]:
    """Paths of the weight files: one file, or every shard named by an index file (safetensors preferred)."""
    for filename in WEIGHT_FILES:
        path = resolve(name_or_path, filename, required=False, **kwargs)
        if path is None:
            continue
        if not filename.endswith(".index.json"):
            return [path]
        index = load_json(name_or_path, filename, **kwargs)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{path} has no 'weight_map' of tensor names to shard files")
        return [_shard(name_or_path, path, shard, kwargs) for shard in sorted(set(weight_map.values()))]
    raise FileNotFoundError(f"{name_or_path!r} has no weights: looked for {', '.join(WEIGHT_FILES)}")
