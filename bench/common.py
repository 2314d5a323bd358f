"""What the issue 3/4/5 benchmarks share: real English text, best-of timing, peak memory of a fresh process,
the machine's load, and comparison of nested outputs."""
from __future__ import annotations

import multiprocessing
import os
import random
import re
import time
from pathlib import Path

MODELS = Path(__file__).parents[1] / ".models"
BOTCHAN = MODELS / "spm" / "botchan.txt"


def sentences(n: int, seed: int = 0, min_words: int = 3) -> list[str]:
    """n sentences of mixed length from Botchan (the sentencepiece test text), drawn at random with a fixed seed."""
    text = " ".join(BOTCHAN.read_text(encoding="utf-8-sig").split())
    found = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= min_words]
    return random.Random(seed).sample(found, n)


def paragraphs(n: int, words: int, seed: int = 0) -> list[str]:
    """n passages of about `words` words each (consecutive sentences), for long QA contexts."""
    text = " ".join(BOTCHAN.read_text(encoding="utf-8-sig").split()).split()
    starts = random.Random(seed).sample(range(0, len(text) - words), n)
    return [" ".join(text[start:start + words]) for start in starts]


def best_time(fn, repeats: int):
    """(best wall seconds, best CPU seconds of this process (all threads), the last result) over `repeats` calls;
    warm up before, on a smaller input. CPU time is the steadier figure while other jobs load the machine."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu, result


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS) or its high-water mark (VmHWM), in MiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Set the RSS high-water mark to the current RSS (Linux >= 4.0), so VmHWM then measures what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def in_fresh_process(fn, *args):
    """Run fn(*args) in a new interpreter (spawn) so its peak RSS is its own; returns what fn returns."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(fn, args)


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores"


def compare(theirs, ours) -> tuple[bool, float]:
    """(same structure, strings, ints and labels; largest float difference) of two nested results."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict) or set(theirs) != set(ours):
            return False, float("inf")
        return _combine(compare(theirs[key], ours[key]) for key in theirs)
    if isinstance(theirs, (list, tuple)):
        if not isinstance(ours, (list, tuple)) or len(theirs) != len(ours):
            return False, float("inf")
        return _combine(compare(a, b) for a, b in zip(theirs, ours))
    if isinstance(theirs, float) or type(theirs).__name__.startswith("float"):  # numpy float scalars too
        return True, abs(float(theirs) - float(ours))
    if hasattr(theirs, "shape"):  # tensors and arrays: same shape, compare values as floats
        if tuple(theirs.shape) != tuple(ours.shape):
            return False, float("inf")
        return True, float(abs(theirs.astype("float64") - ours.astype("float64")).max()) if theirs.size else 0.0
    return theirs == ours, 0.0


def _combine(pairs) -> tuple[bool, float]:
    same, diff = True, 0.0
    for pair_same, pair_diff in pairs:
        same, diff = same and pair_same, max(diff, pair_diff)
    return same, diff


def measure(fn, warm_up, repeats: int) -> dict:
    """Run in a fresh process after loading: warm_up(), then best-of-`repeats` fn(). RSS after loading and the peak
    RSS from the warm-up on (high-water mark reset after loading), in MiB."""
    loaded = rss_mb()
    reset_peak_rss()
    warm_up()
    seconds, cpu, result = best_time(fn, repeats)
    return {"seconds": seconds, "cpu": cpu, "result": result, "rss_loaded": loaded, "rss_peak": rss_mb("VmHWM")}
