"""Issue 2 benchmark: leanformers vs transformers on encoder models of real size (random weights).

cold start  = a fresh process: import + from_pretrained + first forward (each library in its own process, best of N)
throughput  = forward passes over mixed-length padded batches, both libraries in this process, outputs compared
The two libraries alternate within each repeat and each keeps its best time, so load from other jobs hits both.

Run: .venv/bin/python bench/bench_encoders.py [--repeats 3]
"""
import argparse
import subprocess
import sys
import tempfile
import time

import torch

SIZES = {
    "distilbert (66M)": ("DistilBertModel", dict(model_type="distilbert")),
    "bert-base (110M)": ("BertModel", dict(model_type="bert")),
}

COLD = """
import time, sys
t0 = time.perf_counter()
from {lib} import AutoModel
import torch
model = AutoModel.from_pretrained({folder!r})
with torch.inference_mode():
    model(input_ids=torch.ones(1, 16, dtype=torch.long))
print(time.perf_counter() - t0)
"""


def make_checkpoint(class_name, folder):
    import transformers

    config = getattr(transformers, class_name.replace("Model", "Config"))()
    torch.manual_seed(0)
    getattr(transformers, class_name)(config).save_pretrained(folder)


def cold_start(libs, folder, repeats):
    """Best wall time of a fresh process per library; the libraries alternate so a load spike hits both alike."""
    best = {lib: float("inf") for lib in libs}
    for _ in range(repeats):
        for lib in libs:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", COLD.format(lib=lib, folder=folder)], capture_output=True,
                                 text=True, check=True)
            best[lib] = min(best[lib], time.perf_counter() - t0)  # the whole process, interpreter start included
            float(out.stdout.strip().splitlines()[-1])
    return best


def batches(vocab, n=64, batch_size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 128, (n,), generator=g).tolist()
    out = []
    for i in range(0, n, batch_size):
        chunk = lengths[i:i + batch_size]
        ids = torch.randint(1000, vocab, (len(chunk), max(chunk)), generator=g)
        mask = (torch.arange(max(chunk))[None] < torch.tensor(chunk)[:, None]).long()
        out.append((ids * mask, mask))
    return out, sum(lengths)


def throughput(models, data, repeats):
    """Best time over the batches per model, alternating the models each repeat; and the last outputs."""
    best, outs = [float("inf")] * len(models), [None] * len(models)
    with torch.inference_mode():
        for model in models:
            model(input_ids=data[0][0], attention_mask=data[0][1])  # warm-up
        for _ in range(repeats):
            for i, model in enumerate(models):
                t0 = time.perf_counter()
                outs[i] = [model(input_ids=ids, attention_mask=mask).last_hidden_state for ids, mask in data]
                best[i] = min(best[i], time.perf_counter() - t0)
    return best, outs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    import leanformers

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, transformers {transformers.__version__}")
    print(f"{'model':18} {'cold hf s':>9} {'cold ours':>9} {'ratio':>6} | "
          f"{'hf tok/s':>9} {'ours tok/s':>10} {'ratio':>6} {'max diff':>9}")
    for name, (class_name, _) in SIZES.items():
        with tempfile.TemporaryDirectory() as folder:
            make_checkpoint(class_name, folder)
            cold = cold_start(("transformers", "leanformers"), folder, args.repeats)
            cold_hf, cold_ours = cold["transformers"], cold["leanformers"]
            theirs = transformers.AutoModel.from_pretrained(folder).eval()
            ours = leanformers.AutoModel.from_pretrained(folder)
            data, tokens = batches(theirs.config.vocab_size)
            (t_hf, t_ours), (out_hf, out_ours) = throughput((theirs, ours), data, args.repeats)
            diff = max(((a - b) * m[..., None]).abs().max().item() for a, b, (_, m) in zip(out_hf, out_ours, data))
            print(f"{name:18} {cold_hf:9.2f} {cold_ours:9.2f} {cold_ours / cold_hf:6.2f} | {tokens / t_hf:9.0f} "
                  f"{tokens / t_ours:10.0f} {t_hf / t_ours:6.2f} {diff:9.2e}")


if __name__ == "__main__":
    main()
