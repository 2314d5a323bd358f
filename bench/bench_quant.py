"""Issue 12 benchmark: quantized modes side by side with their anchors, in one run, ratios printed, outputs compared.

encoders     text-classification pipeline, DistilBERT-size random classifier (bench_pipelines.py's checkpoint), 256
             Botchan sentences at batch 32: transformers fp32 vs ours fp32 vs ours int8 (labels equal to fp32?);
             and the real MiniLM as feature-extraction (mean-pooled cosine of int8 to fp32).
decode       SmolLM2-135M-Instruct Q4_1 GGUF, batch 1, greedy, chat prompt, 64 new tokens (min = max): ours fp32
             (dequantized), ours int8-weight, ours kept quantized ("gguf") vs llama.cpp's llama-bench on the same file
             and thread count (tg64). Peak RSS of a fresh process (load + generate). Decode tok/s = 64 / (time of
             65 new tokens - time of 1 new token), best of --repeats.
translation  bench_translation.py's Marian of opus-mt size (random weights), 100 sentences, batch 16, 48 new tokens:
             transformers fp32 (reference) vs ours fp32 / int8 vs CTranslate2 int8 (compute_type="int8"), greedy and
             beam 4; "same" = sentences whose tokens equal transformers fp32's.

Run: .venv/bin/python bench/bench_quant.py [--parts encoders decode translation] [--threads 2] [--repeats 3]
llama.cpp: bash bench/build_llama_cpp.sh (binaries in .models/llama.cpp/build/bin/).
"""
import argparse
import json
import logging
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import (
    MODELS,
    best_time,
    in_fresh_process,
    load_note,
    measure,
    rss_mb,
    sentences,
)

SMOLLM2 = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_BENCH = MODELS / "llama.cpp" / "build" / "bin" / "llama-bench"
NEW_TOKENS = 64


def quiet(threads: int):
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


# ---------------------------------------------------------------- encoders
def token_mean(features, tokens: int) -> torch.Tensor:
    """One input's feature-extraction output ([1][tokens][hidden] or [tokens][hidden]) -> its mean over its `tokens`
    real tokens (a batched pipeline's rows may go on with padding: transformers' keep the batch's padded length)."""
    features = torch.tensor(features)
    while features.dim() > 2:
        features = features[0]
    return features[:tokens].mean(0)


def bench_encoders(args):
    import transformers
    from bench_pipelines import make_checkpoint

    import leanformers

    texts = sentences(256)
    print(f"\n## encoders, batch 32, threads {args.threads}: {load_note()}")
    print(f"{'pipeline':34} {'/s':>8} {'vs hf':>6} {'cpu vs hf':>9}  agreement with hf fp32")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint("text", Path(tmp), quick=False)
        runs = {"transformers fp32": transformers.pipeline("text-classification", model=folder, batch_size=32),
                "ours fp32": leanformers.pipeline("text-classification", model=folder, batch_size=32),
                "ours int8": leanformers.pipeline("text-classification", model=folder, batch_size=32,
                                                  quantization="int8")}
        results = {}
        for name, pipe in runs.items():
            pipe(texts[:8])
            wall, cpu, results[name] = best_time(lambda pipe=pipe: pipe(texts), args.repeats)
            runs[name] = (wall, cpu)
        hf_wall, hf_cpu = runs["transformers fp32"]
        for name, (wall, cpu) in runs.items():
            same = sum(a["label"] == b["label"] for a, b in zip(results["transformers fp32"], results[name]))
            print(f"{'text-classification DistilBERT ' + name:34} {256 / wall:8.1f} {hf_wall / wall:6.2f} "
                  f"{hf_cpu / cpu:9.2f}  labels {same}/256", flush=True)
    minilm = str(MODELS / "minilm")
    runs = {"transformers fp32": transformers.pipeline("feature-extraction", model=minilm, batch_size=32),
            "ours fp32": leanformers.pipeline("feature-extraction", model=minilm, batch_size=32),
            "ours int8": leanformers.pipeline("feature-extraction", model=minilm, batch_size=32, quantization="int8")}
    pooled = {}
    lengths = [len(ids) for ids in runs["ours fp32"].tokenizer(texts, truncation=True)["input_ids"]]
    for name, pipe in runs.items():
        pipe(texts[:8])
        wall, cpu, out = best_time(lambda pipe=pipe: pipe(texts), args.repeats)
        pooled[name] = torch.nn.functional.normalize(torch.stack([token_mean(o, n) for o, n in zip(out, lengths)]),
                                                     dim=-1)
        runs[name] = (wall, cpu)
    hf_wall, hf_cpu = runs["transformers fp32"]
    for name, (wall, cpu) in runs.items():
        cosine = (pooled[name] * pooled["transformers fp32"]).sum(-1).min().item()
        print(f"{'feature-extraction MiniLM ' + name:34} {256 / wall:8.1f} {hf_wall / wall:6.2f} {hf_cpu / cpu:9.2f}"
              f"  min cosine {cosine:.4f}", flush=True)


# ---------------------------------------------------------------- SmolLM2 decode
def decode_ours(quantization, threads: int, repeats: int) -> dict:
    """In a fresh process: load, then best-of decode tok/s; peak RSS of the whole process (load included)."""
    quiet(threads)
    import leanformers

    start = time.perf_counter()
    model = leanformers.AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name,
                                                             quantization=quantization)
    load_seconds = time.perf_counter() - start
    tokenizer = leanformers.AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    loaded = rss_mb()

    def run(new):
        with torch.inference_mode():
            return model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    run(2)
    prefill, _, _ = best_time(lambda: run(1), repeats)
    full, _, out = best_time(lambda: run(NEW_TOKENS + 1), repeats)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0][:40]
    return {"tok_s": NEW_TOKENS / (full - prefill), "load": load_seconds, "rss_loaded": loaded,
            "rss_peak": rss_mb("VmHWM"), "answer": answer}


def decode_llama_cpp(threads: int, repeats: int) -> dict:
    import resource

    out = subprocess.run([str(LLAMA_BENCH), "-m", str(SMOLLM2), "-p", "0", "-n", str(NEW_TOKENS), "-t", str(threads),
                          "-r", str(repeats), "-o", "json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)[0]
    return {"tok_s": result["avg_ts"], "rss_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "build": result.get("build_commit", "?")}


def bench_decode(args):
    print(f"\n## SmolLM2-135M Q4_1 batch-1 decode, {NEW_TOKENS} tokens, threads {args.threads}: {load_note()}")
    print(f"{'engine':28} {'tok/s':>7} {'vs fp32':>7} {'vs llama.cpp':>12} {'MiB loaded/peak':>16} first line")
    runs = {}
    if LLAMA_BENCH.exists():
        runs["llama.cpp (llama-bench tg)"] = in_fresh_process(decode_llama_cpp, args.threads, args.repeats)
    for name, mode in (("ours fp32 (dequantized)", None), ("ours int8-weight", "int8-weight"),
                       ("ours gguf kept quantized", "gguf")):
        runs[name] = in_fresh_process(decode_ours, mode, args.threads, args.repeats)
    fp32 = runs["ours fp32 (dequantized)"]["tok_s"]
    llama = runs.get("llama.cpp (llama-bench tg)", {}).get("tok_s")
    for name, run in runs.items():
        versus = f"{run['tok_s'] / llama:12.2f}" if llama else f"{'n/a':>12}"
        memory = f"{run.get('rss_loaded', float('nan')):6.0f}/{run['rss_peak']:<7.0f}"
        print(f"{name:28} {run['tok_s']:7.1f} {run['tok_s'] / fp32:7.2f} {versus} {memory:>16} "
              f"{run.get('answer', run.get('build', ''))!r}", flush=True)


# ---------------------------------------------------------------- translation
def translate_run(library: str, quantization, folder: str, chunks, beams: int, new_tokens: int, repeats: int,
                  threads: int) -> dict:
    from bench_translation import PAD, ctranslate2_translator

    quiet(threads)
    if library == "ctranslate2":
        translate = ctranslate2_translator(folder, threads, quantization)
    else:
        module = __import__(library)
        extra = {"quantization": quantization} if quantization else {}
        model = module.MarianMTModel.from_pretrained(folder, **extra).eval()

        def translate(chunk, beams, new_tokens):
            width = max(map(len, chunk))
            ids = torch.tensor([row + [PAD] * (width - len(row)) for row in chunk])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk])
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=mask, num_beams=beams, do_sample=False,
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, bad_words_ids=[[PAD]])
            return out[:, 1:].tolist()

    return measure(lambda: [row for chunk in chunks for row in translate(chunk, beams, new_tokens)],
                   lambda: translate(chunks[0], beams, 4), repeats)


def bench_translation(args):
    from bench_translation import save_marian, source_chunks
    from ctranslate2.converters import TransformersConverter

    n, new_tokens = 100, 48
    print(f"\n## translation, Marian opus-mt size (random), {n} sentences, batch 16, {new_tokens} tokens, "
          f"threads {args.threads}: {load_note()}")
    print(f"{'beams':5} {'engine':22} {'tok/s':>8} {'vs hf':>6} {'vs ct2 int8':>11} {'MiB load/peak':>14} same as hf")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_marian(folder, quick=False)
        TransformersConverter(str(folder)).convert(str(folder / "ct2"), force=True)
        chunks = source_chunks(folder, n)
        for beams in args.beams:
            engines = {"transformers fp32": ("transformers", None), "ours fp32": ("leanformers", None),
                       "ours int8": ("leanformers", "int8"), "ctranslate2 int8": ("ctranslate2", "int8")}
            runs = {name: in_fresh_process(translate_run, library, mode, str(folder), chunks, beams, new_tokens,
                                           args.repeats, args.threads) for name, (library, mode) in engines.items()}
            reference, ct2 = runs["transformers fp32"], runs["ctranslate2 int8"]
            for name, run in runs.items():
                same = sum(a == b for a, b in zip(reference["result"], run["result"]))
                print(f"{beams:5} {name:22} {n * new_tokens / run['seconds']:8.1f} "
                      f"{reference['seconds'] / run['seconds']:6.2f} {ct2['seconds'] / run['seconds']:11.2f} "
                      f"{run['rss_loaded']:6.0f}/{run['rss_peak']:<7.0f} {same}/{n}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", nargs="+", default=["encoders", "decode", "translation"],
                        choices=["encoders", "decode", "translation"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 4])
    args = parser.parse_args()
    quiet(args.threads)
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"torch {torch.__version__}, {cpu}, threads {args.threads}, {load_note()}")
    for part in args.parts:
        {"encoders": bench_encoders, "decode": bench_decode, "translation": bench_translation}[part](args)
    print(f"\nafter: {load_note()}")


if __name__ == "__main__":
    main()
