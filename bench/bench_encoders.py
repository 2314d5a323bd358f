"""Issue 2 benchmark: leanformers vs transformers on encoder models of real size (random weights).

cold start  = a fresh process: import + from_pretrained + first forward (each library in its own process, best of N)
throughput  = forward passes over mixed-length padded batches, both libraries in this process, outputs compared

Run: .venv/bin/python bench/bench_encoders.py [--repeats 3]
"""
import argparse
import statistics
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


def cold_start(lib, folder, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD.format(lib=lib, folder=folder)], capture_output=True,
                             text=True, check=True)
        times.append(time.perf_counter() - t0)  # the whole process, interpreter start included
        float(out.stdout.strip().splitlines()[-1])
    return min(times)


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


def throughput(model, data, repeats):
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=data[0][0], attention_mask=data[0][1])  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs = [model(input_ids=ids, attention_mask=mask).last_hidden_state for ids, mask in data]
            best = min(best, time.perf_counter() - t0)
    return best, outs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import transformers

    import leanformers

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, transformers {transformers.__version__}")
    print(f"{'model':18} {'cold hf s':>9} {'cold ours':>9} {'ratio':>6} | {'hf tok/s':>9} {'ours tok/s':>10} {'ratio':>6} {'max diff':>9}")
    for name, (class_name, _) in SIZES.items():
        with tempfile.TemporaryDirectory() as folder:
            make_checkpoint(class_name, folder)
            cold_hf = cold_start("transformers", folder, args.repeats)
            cold_ours = cold_start("leanformers", folder, args.repeats)
            theirs = transformers.AutoModel.from_pretrained(folder).eval()
            ours = leanformers.AutoModel.from_pretrained(folder)
            data, tokens = batches(theirs.config.vocab_size)
            t_hf, out_hf = throughput(theirs, data, args.repeats)
            t_ours, out_ours = throughput(ours, data, args.repeats)
            diff = max(((a - b) * m[..., None]).abs().max().item() for a, b, (_, m) in zip(out_hf, out_ours, data))
            print(f"{name:18} {cold_hf:9.2f} {cold_ours:9.2f} {cold_ours / cold_hf:6.2f} | {tokens / t_hf:9.0f} "
                  f"{tokens / t_ours:10.0f} {t_hf / t_ours:6.2f} {diff:9.2e}")


if __name__ == "__main__":
    main()
