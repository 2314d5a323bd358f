"""checkpoint-N folders that are never half-written, found again on resume, rotated by save_total_limit.

A checkpoint is written into `output_dir/tmp-checkpoint-N` and renamed to `checkpoint-N` only when every file is on
disk, so a process killed while saving leaves at most a tmp folder that resume ignores and the next save replaces.
The files are transformers' (model safetensors + config.json, optimizer.pt, scheduler.pt, rng_state.pth,
trainer_state.json, training_args.bin), so either library can read them.
"""
from __future__ import annotations

import os
import re
import shutil

import torch

PREFIX = "checkpoint"
TMP_PREFIX = "tmp-checkpoint"
STATE_FILE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_NAME = re.compile(rf"^{PREFIX}-(\d+)$")


def is_complete(folder: str) -> bool:
    """A finished checkpoint: its trainer state (written last) and its weights are there."""
    return os.path.isfile(os.path.join(folder, STATE_FILE)) and any(
        os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES)


def sorted_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoint-N folders in output_dir, oldest (smallest N) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, name)) for name in os.listdir(output_dir)
             if (m := _NAME.match(name)) and is_complete(os.path.join(output_dir, name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint (transformers' get_last_checkpoint, skipping unfinished ones), or None."""
    found = sorted_checkpoints(output_dir)
    return found[-1] if found else None


def resolve_resume(resume_from_checkpoint, output_dir: str) -> str | None:
    """train(resume_from_checkpoint=None | True | path) -> the folder to resume from, or a clear error."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        folder = latest_checkpoint(output_dir)
        if folder is None:
            raise ValueError(f"resume_from_checkpoint=True but {output_dir!r} holds no complete checkpoint-N folder "
                             f"(found: {sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else 'no folder'})")
        return folder
    folder = os.fspath(resume_from_checkpoint)
    if not os.path.isdir(folder):
        raise ValueError(f"resume_from_checkpoint: {folder!r} does not exist")
    if not is_complete(folder):
        missing = [name for name in (STATE_FILE, "model.safetensors") if not os.path.exists(os.path.join(folder, name))]
        raise ValueError(f"resume_from_checkpoint: {folder!r} is not a complete checkpoint (missing {missing})")
    return folder


def begin(output_dir: str, step: int) -> str:
    """A fresh temporary folder for checkpoint `step` (a leftover from a killed save is discarded)."""
    tmp = os.path.join(output_dir, f"{TMP_PREFIX}-{step}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def commit(tmp: str, output_dir: str, step: int) -> str:
    """Flush the temporary folder's files to disk, then rename it to checkpoint-N (an existing one is replaced)."""
    for name in os.listdir(tmp):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    final = os.path.join(output_dir, f"{PREFIX}-{step}")
    if os.path.exists(final):  # saving the same step again (e.g. after a resume): swap, then drop the old one
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(output_dir)
    return final


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rotate(output_dir: str, save_total_limit: int | None, best: str | None = None) -> list[str]:
    """Delete the oldest checkpoints beyond save_total_limit, never the best one; returns what was deleted.
    As transformers: the best counts as the second newest, and a limit of 1 keeps 2 when the best is not the last."""
    if not save_total_limit or save_total_limit <= 0:
        return []
    found = [os.path.abspath(p) for p in sorted_checkpoints(output_dir)]
    best = os.path.abspath(best) if best else None
    if best in found[:-1]:
        found.remove(best)
        found.insert(len(found) - 1, best)
    limit = 2 if save_total_limit == 1 and best is not None and found and found[-1] != best else save_total_limit
    doomed = found[: max(0, len(found) - limit)]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def save_torch(obj, path: str) -> None:
    torch.save(obj, path)


def load_torch(path: str, what: str):
    """torch.load a checkpoint file with a message that names it when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise ValueError(f"the checkpoint has no {what} file {path!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"could not read {what} from {path!r}: {err}") from None
