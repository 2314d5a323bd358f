"""Repo id or local path -> local files. No torch here.

A checkpoint is named by a local folder, or by a Hub repo id that is looked up in the shared Hugging Face cache
(`HF_HOME` / `HF_HUB_CACHE`, `models--org--name/snapshots/<rev>/`) first and downloaded only when online.
`HF_HUB_OFFLINE=1` (or `local_files_only=True`) never touches the network.
"""
from __future__ import annotations

import json
import os

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts) and "\\" not in name


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
        with open(path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{path} has no 'weight_map'")
        shards = sorted(set(weight_map.values()))
        return [resolve(name_or_path, shard, **kwargs) for shard in shards]  # shards sit beside their index
    raise FileNotFoundError(f"{name_or_path!r} has no weights: looked for {', '.join(WEIGHT_FILES)}")
