"""Constant memory on a huge input: a 1M-row file streams through the local engine in a subprocess whose resident
memory (RSS) is measured after warm-up and at its peak (VmHWM) afterwards.

A million rows through even a tiny model take ~5 minutes on this shared 2-core machine (the pipelines' per-row
Python work, ~200 us, not the model), too long for CI. So the proof has two runs in one fresh process:
  1M rows   the whole engine (read, parse, check, chunk, Predictor, JSON, write, fsync, progress record) with the
            pipeline call swapped for a trivially small stand-in (label + text length) loaded the normal way;
  30k rows  the same engine with the real tiny random BERT classifier, unchanged.
Both must stay within a fixed bound above their warmed-up RSS: far less than the input file (~40 MB) or the output
(~55 MB) that holding all rows would take."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_pipelines import LABELS, make_checkpoint, needs_minilm

pytestmark = needs_minilm
SRC = Path(__file__).resolve().parents[1] / "src"
BOUND_MB = 25

SCRIPT = r'''
import json, sys
import torch
torch.set_num_threads(1)
from leanformers import batch
from leanformers.batch import output

model, path_big, path_small, out = sys.argv[1:5]


def rss_mb(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


warm = {}
real_write = output.ResumableOutput.write
def write_and_measure(self, first_row, results, errors):
    real_write(self, first_row, results, errors)
    if "mb" not in warm and first_row + len(results) >= warm["at"]:
        warm["mb"] = rss_mb()
        open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here on: the peak of the rest of the run
output.ResumableOutput.write = write_and_measure

report = {}
real_call = batch.Predictor._call
for tag, path, warm_at in (("1M", path_big, 100_000), ("30k", path_small, 5_000)):
    warm.clear()
    warm["at"] = warm_at
    if tag == "1M":  # everything but the model pass runs for real
        batch.Predictor._call = lambda self, items: [{"label": "LABEL_0", "score": float(len(x))} for x in items]
    summary = batch.run("text-classification", model, path, f"{out}{tag}.jsonl", batch_size=64, quiet=True)
    batch.Predictor._call = real_call
    report[tag] = {"rows": summary["rows"], "ok": summary["ok"], "seconds": summary["seconds"],
                   "warm_mb": warm["mb"], "peak_after_mb": rss_mb("VmHWM"), "end_mb": rss_mb()}
print(json.dumps(report))
'''


def test_million_rows_in_bounded_memory(tmp_path):
    model = make_checkpoint(tmp_path / "tiny", "ForSequenceClassification", id2label=LABELS["text"],
                            label2id={v: k for k, v in LABELS["text"].items()})
    words = ["good", "bad", "film", "plot", "slow", "fun", "actor", "scene"]
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    with open(big, "w") as file:
        file.writelines(json.dumps({"text": f"row {i} {words[i % 8]} {words[i // 8 % 8]} {words[i // 64 % 8]}"})
                        + "\n" for i in range(1_000_000))
    with open(small, "w") as file:
        file.writelines(json.dumps({"text": f"row {i} {words[i % 8]} " + "very " * (i % 7)}) + "\n"
                        for i in range(30_000))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, model, str(big), str(small), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1), f"input file {big.stat().st_size / 2**20:.0f} MiB")
    assert report["1M"]["rows"] == report["1M"]["ok"] == 1_000_000 and report["30k"]["ok"] == 30_000
    for name, run in report.items():
        growth = run["peak_after_mb"] - run["warm_mb"]
        assert growth < BOUND_MB, f"{name}: RSS grew {growth:.1f} MB after warm-up ({run})"
    with open(tmp_path / "out1M.jsonl", "rb") as file:
        assert sum(1 for _ in file) == 1_000_000
