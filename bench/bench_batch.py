"""Issue 11 benchmark: rows/s of batch inference over a file of short texts with a DistilBERT-size (66M) random
classifier (real bert-base-uncased vocabulary from the MiniLM files), five ways, in one run:

  engine        leanformers.batch.run(engine="local"): read JSON lines, chunk, length-sorted batches, write, fsync,
                progress record (all included)
  engine 2t     the same with torch on 2 threads (the machine's 2 cores)
  for loop      `for text in texts: pipe(text)` over our pipeline(), one call per row (what a user writes first)
  hf KeyDataset transformers' pipeline over KeyDataset(datasets.Dataset, "text") with batch_size: its streaming path
  ray 2 workers leanformers.batch.run(engine="ray"): a local Ray of 2 CPUs, 2 actors of 1 thread; timed with and
                without starting Ray (ray.init), the actors' start-up (torch import, model load) counts in both

Outputs are compared with the engine's (same labels, scores within 1e-4). The for loop and transformers may run on
fewer rows (--loop-rows, --hf-rows) when the machine is busy; rows/s is what is compared.

Run: .venv/bin/python bench/bench_batch.py [--rows 20000] [--loop-rows N] [--hf-rows N] [--threads 1] [--no-ray]
     [--no-2t] [--quick]
"""
import argparse
import json
import logging
import os
import random
import re
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_pipelines import make_checkpoint
from common import BOTCHAN, compare, load_note


def short_texts(n: int, seed: int = 0) -> list[str]:
    """n short texts (3-12 words) cut from Botchan's sentences, drawn with replacement with a fixed seed."""
    text = " ".join(BOTCHAN.read_text(encoding="utf-8-sig").split())
    found = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]
    rng = random.Random(seed)
    return [" ".join(rng.choice(found).split()[: rng.randint(3, 12)]) for _ in range(n)]


def engine_results(path: str) -> list:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line)["result"] for line in file]


def timed(label: str, rows: int, fn) -> dict:
    """Wall seconds and this process's CPU seconds (all its threads; steadier than wall time on a busy machine;
    for Ray only the driver's, not the workers')."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {label}: {rows} rows in {seconds:.1f} s ({rows / seconds:.1f} rows/s, {cpu:.1f} CPU s) "
          f"[{load_note()}]", flush=True)
    return {"label": label, "rows": rows, "seconds": seconds, "cpu": cpu, "result": result}


def run_engine(folder, path, out, args, threads, engine="local", **extra):
    import leanformers.batch

    torch.set_num_threads(threads)
    leanformers.batch.run("text-classification", folder, path, out, batch_size=args.batch_size, engine=engine,
                          overwrite=True, quiet=True, **extra)
    return engine_results(out)


def for_loop(folder, texts, threads):
    import leanformers

    torch.set_num_threads(threads)
    pipe = leanformers.pipeline("text-classification", model=folder)
    pipe(texts[:2])
    return [pipe(text)[0] for text in texts]


def hf_key_dataset(folder, texts, args, threads):
    import datasets
    import transformers
    from transformers.pipelines.pt_utils import KeyDataset

    torch.set_num_threads(threads)
    pipe = transformers.pipeline("text-classification", model=folder, device=-1)
    dataset = datasets.Dataset.from_dict({"text": texts})
    return list(pipe(KeyDataset(dataset, "text"), batch_size=args.batch_size))


def with_ray(folder, path, out, args):
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False,
             logging_level="error")
    init_seconds = time.perf_counter() - start
    try:
        run = timed("ray 2 workers (Ray already started)", args.rows,
                    lambda: run_engine(folder, path, out, args, 1, engine="ray", num_workers=2, cpus_per_worker=1))
    finally:
        ray.shutdown()
    print(f"  ray.init: {init_seconds:.1f} s", flush=True)
    run["init_seconds"] = init_seconds
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--loop-rows", type=int, default=None, help="rows for the for loop (default: --rows)")
    parser.add_argument("--hf-rows", type=int, default=None, help="rows for transformers (default: --rows)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the one-process runs")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-2t", action="store_true", help="skip the engine on 2 threads")
    parser.add_argument("--quick", action="store_true", help="a 2-layer model: checks the script")
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    texts = short_texts(args.rows)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {os.cpu_count()} cores, "
          f"{args.rows} short texts, batch_size {args.batch_size}, {load_note()}"
          f"{' (QUICK: 2-layer model)' if args.quick else ''}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_checkpoint("text", tmp / "model", args.quick)
        path = str(tmp / "in.jsonl")
        with open(path, "w", encoding="utf-8") as file:
            file.writelines(json.dumps({"text": text}) + "\n" for text in texts)
        out = str(tmp / "out.jsonl")
        runs.append(timed(f"engine {args.threads}t", args.rows,
                          lambda: run_engine(folder, path, out, args, args.threads)))
        if args.threads != 2 and not args.no_2t:
            runs.append(timed("engine 2t", args.rows, lambda: run_engine(folder, path, out, args, 2)))
        loop_rows = args.loop_rows or args.rows
        runs.append(timed(f"for loop {args.threads}t", loop_rows,
                          lambda: for_loop(folder, texts[:loop_rows], args.threads)))
        hf_rows = args.hf_rows or args.rows
        runs.append(timed(f"hf KeyDataset {args.threads}t", hf_rows,
                          lambda: hf_key_dataset(folder, texts[:hf_rows], args, args.threads)))
        if not args.no_ray:
            runs.append(with_ray(folder, path, out, args))
    report(runs)


def report(runs):
    reference = runs[0]["result"]
    loop = next(run for run in runs if run["label"].startswith("for loop"))
    loop_rate = loop["rows"] / loop["seconds"]
    loop_cpu = loop["cpu"] / loop["rows"]
    print(f"\n{'way':40} {'rows':>6} {'seconds':>8} {'rows/s':>8} {'x loop':>7} {'cpu ms/row':>10} {'cpu x':>6} "
          f"{'max diff':>9} same")
    for run in runs:
        rate = run["rows"] / run["seconds"]
        cpu = run["cpu"] / run["rows"]
        same, diff = compare(reference[: run["rows"]], run["result"])
        cpu_ratio = f"{loop_cpu / cpu:6.2f}" if "init_seconds" not in run else f"{'driver':>6}"
        print(f"{run['label']:40} {run['rows']:6} {run['seconds']:8.1f} {rate:8.1f} {rate / loop_rate:7.2f} "
              f"{1000 * cpu:10.1f} {cpu_ratio} {diff:9.1e} {'yes' if same and diff <= 1e-4 else 'NO'}")
        if "init_seconds" in run:
            total = run["seconds"] + run["init_seconds"]
            print(f"{'  ray incl. ray.init':40} {run['rows']:6} {total:8.1f} {run['rows'] / total:8.1f} "
                  f"{run['rows'] / total / loop_rate:7.2f}")
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
