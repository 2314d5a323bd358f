"""Our own CPU kernels (C++ next to this file), compiled on first use against the installed torch and cached.

`blocks()` returns True once `torch.ops.leanformers.q4_linear` / `q8_linear` are loaded: block-quantized linears
in llama.cpp's scheme (weights in blocks of 32 inputs, 4-bit with a scale and a minimum or int8 with a scale;
activations quantized per call to two int8 blocks of 32, ~16 bits; integer dot products with AVX2), with the fused
decode-step ops beside them (rms_norm, rotary, decode_layer: modeling/quant.py). It returns False, and the
quantized layers keep torch's kernels, where it cannot be had: not x86-64 with AVX2 + FMA + F16C, no C++ compiler, a
failed build (logged once, with the compiler's message), or LEANFORMERS_QUANT_KERNEL naming another kernel.

The build (~20 s, g++ against torch's headers) goes to $LEANFORMERS_KERNEL_CACHE or ~/.cache/leanformers/kernels,
one folder per source + torch version, written under a lock and renamed into place so that concurrent processes
and a kill mid-build leave either no library or a whole one.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger("leanformers")
SOURCE = Path(__file__).with_name("blocks.cpp")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return frozenset(next((line for line in cpuinfo if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def cache_folder() -> Path:
    """Where built kernels are kept: one sub-folder per (source, torch, python) fingerprint."""
    root = os.environ.get("LEANFORMERS_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "leanformers", "kernels")
    fingerprint = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + sys.version.encode()).hexdigest()
    return Path(root) / fingerprint[:16]


@functools.cache
def blocks() -> bool:
    """True when the block-quantized kernels are loaded (built first if needed); False where they cannot be."""
    forced = os.environ.get("LEANFORMERS_QUANT_KERNEL")
    if forced and forced != "blocks":
        return False
    if platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma", "f16c"} <= cpu_flags():
        return False
    try:
        library = _build(cache_folder())
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        logger.warning("leanformers: the block-quantized CPU kernels could not be built (%s); quantized layers use "
                       "torch's kernels instead", detail.strip()[-2000:])
        return False
    return True


def _build(folder: Path) -> Path:
    library = folder / "blocks.so"
    if library.exists():
        return library
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise OSError("no C++ compiler (g++ or c++) on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if library.exists():  # another process built it while we waited
            return library
        torch_root = Path(torch.__file__).parent
        include = torch_root / "include"
        with tempfile.TemporaryDirectory(dir=folder) as work:
            partial = Path(work) / "blocks.so"
            command = [compiler, "-O3", "-std=c++20", "-shared", "-fPIC", "-mavx2", "-mfma", "-mf16c",
                       "-ffp-contract=off", "-fopenmp", "-DNDEBUG",
                       f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
                       f"-I{include}", f"-I{include / 'torch/csrc/api/include'}", str(SOURCE), "-o", str(partial),
                       f"-L{torch_root / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_root / 'lib'}"]
            logger.info("leanformers: building the block-quantized CPU kernels into %s", folder)
            subprocess.run(command, check=True, capture_output=True, text=True)
            os.replace(partial, library)
    return library
