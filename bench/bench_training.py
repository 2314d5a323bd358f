"""Issue 9 benchmark: leanformers' Trainer vs transformers' Trainer, fine-tuning a DistilBERT-size classifier.

Same random checkpoint (saved by transformers; dropout 0), same 128-token examples, same seed, batch 16: each
library trains in its own fresh process (so its peak RSS is its own), logging the loss of every step. The loss
curves must agree (1e-4) over the first 20 steps; the speed is the examples per second over the steps after the
first two (warm-up), and the CPU seconds per step (steadier under a shared machine's load).
--padded: the examples are 16-128 real tokens padded to 128 (tokenizer(..., padding="max_length", max_length=128),
as many tutorials write it); leanformers' encoder then runs its per-token layers on the real tokens only.

Run: .venv/bin/python bench/bench_training.py [--steps 20] [--threads 1] [--repeats 1] [--padded]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH, LENGTH = 16, 128


def make_checkpoint(folder: str) -> None:
    import torch
    import transformers

    config = transformers.DistilBertConfig(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, num_labels=2)
    torch.manual_seed(0)
    transformers.DistilBertForSequenceClassification(config).save_pretrained(folder)


def examples(n: int, vocab: int = 30522, seed: int = 0, padded: bool = False) -> list[dict]:
    """n examples of LENGTH tokens: all real (padded=False), or `padding="max_length"` style, each a random length
    of 16-128 real tokens ([CLS] ... [SEP]) then [PAD] (id 0, attention_mask 0) up to LENGTH."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, LENGTH), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    lengths = torch.randint(16, LENGTH + 1, (n,), generator=g) if padded else torch.full((n,), LENGTH)
    rows = []
    for row, y, length in zip(ids, labels, lengths.tolist()):
        tokens = [101] + row[1:length - 1].tolist() + [102] + [0] * (LENGTH - length)
        rows.append({"input_ids": tokens, "attention_mask": [1] * length + [0] * (LENGTH - length), "label": int(y)})
    return rows


def worker(library: str, folder: str, steps: int, threads: int, padded: bool = False) -> dict:
    """Train `steps` steps with `library`'s Trainer; returns per-step losses, wall/CPU times and the peak RSS."""
    import torch

    torch.set_num_threads(threads)
    if library == "transformers":
        import transformers as lib
        model = lib.AutoModelForSequenceClassification.from_pretrained(folder)
    else:
        import leanformers as lib
        model = lib.AutoModelForSequenceClassification.from_pretrained(folder)
    marks = []

    class Clock(lib.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

    args = lib.TrainingArguments(tempfile.mkdtemp(), per_device_train_batch_size=BATCH, max_steps=steps,
                                 learning_rate=5e-5, warmup_steps=2, logging_steps=1, save_strategy="no",
                                 report_to="none", disable_tqdm=True, seed=42)
    trainer = lib.Trainer(model=model, args=args, train_dataset=examples(BATCH * steps, padded=padded),
                          callbacks=[Clock()])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (w0, c0), (w1, c1) = marks[1], marks[-1]
    timed = len(marks) - 2
    peak = next(int(line.split()[1]) / 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return {"losses": losses, "examples_per_s": timed * BATCH / (w1 - w0), "cpu_s_per_step": (c1 - c0) / timed,
            "peak_rss_mb": peak}


def run_worker(library: str, folder: str, steps: int, threads: int, padded: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", library, "--folder", folder, "--steps", str(steps),
                           "--threads", str(threads)] + (["--padded"] if padded else []),
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{library} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the libraries; keep each one's best")
    parser.add_argument("--padded", action="store_true",
                        help='examples of 16-128 real tokens padded to 128 (padding="max_length") instead of 128 real')
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.steps, args.threads, args.padded)))
        return
    with tempfile.TemporaryDirectory() as folder:
        make_checkpoint(folder)
        best = {}
        for _ in range(args.repeats):
            for library in ("transformers", "leanformers"):
                result = run_worker(library, folder, args.steps, args.threads, args.padded)
                if library not in best or result["examples_per_s"] > best[library]["examples_per_s"]:
                    best[library] = result
    one, five, _ = os.getloadavg()
    hf, ours = best["transformers"], best["leanformers"]
    worst = max(abs(a - b) for a, b in zip(hf["losses"], ours["losses"]))
    same = len(hf["losses"]) == len(ours["losses"]) == args.steps and worst <= 1e-4
    tokens = "16-128 real tokens padded to 128" if args.padded else f"{LENGTH} real tokens"
    print(f"DistilBERT-size (66M) sequence classification, batch {BATCH} x {tokens}, {args.steps} steps, "
          f"{args.threads} thread(s); load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores")
    print(f"{'library':14} {'examples/s':>10} {'cpu s/step':>10} {'peak RSS MB':>11}")
    for name, result in (("transformers", hf), ("leanformers", ours)):
        print(f"{name:14} {result['examples_per_s']:10.2f} {result['cpu_s_per_step']:10.2f} "
              f"{result['peak_rss_mb']:11.0f}")
    speed = ours["examples_per_s"] / hf["examples_per_s"]
    cpu = hf["cpu_s_per_step"] / ours["cpu_s_per_step"]
    memory = ours["peak_rss_mb"] / hf["peak_rss_mb"]
    verdict = "equal" if same else "DIFFER"
    print(f"speed ratio {speed:.2f}x (cpu {cpu:.2f}x), memory ratio {memory:.2f}x; loss curves {verdict} "
          f"(max diff {worst:.1e} over {len(hf['losses'])} steps)")
    print("losses hf:  ", " ".join(f"{x:.4f}" for x in hf["losses"]))
    print("losses ours:", " ".join(f"{x:.4f}" for x in ours["losses"]))


if __name__ == "__main__":
    main()
