"""`leanformers serve` under load: 1, 4 and 16 concurrent streaming clients on a GPT-2-size random model and on the
real SmolLM2-135M GGUF; aggregate tokens/s, p50/p99 time to first token (TTFT) and inter-token latency (ITL),
against one-at-a-time serving (the same server with --max-batch-size 1) and llama.cpp's server on the same GGUF
(when a build is found); then the server's RSS over 1000 small requests.

    .venv/bin/python bench/bench_server.py [--threads 2] [--max-tokens 32] [--llama-server PATH] [--quick]
        [--models smollm2 --quantization gguf]   (SmolLM2 on the file's own blocks: our block kernels)

Every server is a separate process on 127.0.0.1 started and stopped here; requests are /v1/completions with
stream=true, temperature 0 and ignore_eos (every request generates exactly --max-tokens tokens); the greedy texts of
the batched server are compared with one-at-a-time serving's.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".models"
SMOLLM2 = MODELS / "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["The history of the city begins", "In a small village by the sea there lived", "Write a short story about",
           "The most important thing to know about computers is", "Once upon a time", "My favourite food is",
           "Scientists have discovered that", "The weather today is", "In the year 2050, people will",
           "The best way to learn a language is", "A good friend is someone who", "The river flowed quietly",
           "Every morning the old man", "The capital of France is", "Music can change the way we",
           "The recipe calls for"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpt2_size_model(folder: Path) -> str:
    """A GPT-2-size (124M) random model with the real GPT-2 vocabulary, saved once by transformers."""
    if not (folder / "config.json").exists():
        import torch
        import transformers

        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval().save_pretrained(folder)
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(MODELS / "gpt2_vocab" / name, folder / name)
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer",
                                                                  "model_max_length": 1024}))
    return str(folder)


class Server:
    """A server process on a free port; `url` once /health (or llama.cpp's /health) answers 200."""

    def __init__(self, command: list[str], port: int, env=None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)

    def __enter__(self):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def ours(model: str, threads: int, batch: int, gguf: str | None = None, quantization: str | None = None) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "leanformers.cli", "serve", "--model", model, "--port", str(port),
               "--threads", str(threads), "--max-batch-size", str(batch), "--max-queue", "4096",
               "--log-level", "warning"]
    if gguf:
        command += ["--gguf-file", gguf, "--served-model-name", "m"]
    if quantization:
        command += ["--quantization", quantization]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return Server(command, port, env)


def llama_cpp(binary: str, threads: int, slots: int, context: int) -> Server:
    port = free_port()
    return Server([binary, "-m", str(SMOLLM2 / GGUF), "--port", str(port), "--host", "127.0.0.1", "-t",
                   str(threads), "-np", str(slots), "-c", str(context * slots), "--no-webui"], port)


async def one_request(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> dict:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True}
    start = time.perf_counter()
    times, text = [], []
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line.strip() == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            piece = event["choices"][0].get("text", "") if event.get("choices") else ""
            if piece:
                times.append(time.perf_counter())
                text.append(piece)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {"ttft": times[0] - start if times else float("nan"), "gaps": gaps, "text": "".join(text),
            "chunks": len(times)}


async def load(url: str, clients: int, requests_per_client: int, max_tokens: int) -> dict:
    """`clients` concurrent clients, each sending its requests one after another."""
    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=httpx.Limits(max_connections=clients)) as c:
        async def client(k):
            return [await one_request(c, PROMPTS[(k * requests_per_client + i) % len(PROMPTS)], max_tokens)
                    for i in range(requests_per_client)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client(k) for k in range(clients))) for r in rs]
        wall = time.perf_counter() - start
    gaps = sorted(g for r in results for g in r["gaps"])
    ttfts = sorted(r["ttft"] for r in results)
    return {"tok_s": clients * requests_per_client * max_tokens / wall, "wall": wall,
            "ttft_p50": _pct(ttfts, 50), "ttft_p99": _pct(ttfts, 99), "itl_p50": _pct(gaps, 50),
            "itl_p99": _pct(gaps, 99), "texts": [r["text"] for r in results]}


def _pct(values, p):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def run_matrix(name: str, servers: dict, client_counts, requests_for, max_tokens: int):
    rows, reference = [], {}
    for label, make in servers.items():
        with make() as server:
            asyncio.run(load(server.url, 1, 1, 4))  # warm-up
            for clients in client_counts:
                r = load_sync(server.url, clients, requests_for(clients), max_tokens)
                key = (clients,)
                same = ""
                if label.startswith("ours") and key in reference:
                    same = "yes" if r["texts"] == reference[key] else "NO"
                elif label.startswith("ours"):
                    reference[key] = r["texts"]
                rows.append((name, label, clients, r, same))
                print(f"{name:10s} {label:22s} {clients:3d} clients  {r['tok_s']:7.1f} tok/s  "
                      f"TTFT p50 {r['ttft_p50'] * 1000:7.0f} p99 {r['ttft_p99'] * 1000:7.0f} ms  "
                      f"ITL p50 {r['itl_p50'] * 1000:6.0f} p99 {r['itl_p99'] * 1000:6.0f} ms  {same}", flush=True)
    return rows


def load_sync(url, clients, requests_per_client, max_tokens):
    return asyncio.run(load(url, clients, requests_per_client, max_tokens))


def rss_over_requests(model: str, threads: int, total: int) -> tuple[float, float, float]:
    """(RSS after a 100-request warm-up, after `total` more small requests, growth %), 8 clients at a time."""
    async def burst(url, n):
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            limit = asyncio.Semaphore(8)

            async def one(i):
                async with limit:
                    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 4, "temperature": 0,
                            "stream": i % 2 == 0}
                    response = await client.post("/v1/completions", json=body)
                    response.raise_for_status()
            await asyncio.gather(*(one(i) for i in range(n)))

    with ours(model, threads, 8) as server:
        asyncio.run(burst(server.url, 100))
        before = server.rss_mb()
        asyncio.run(burst(server.url, total))
        after = server.rss_mb()
    return before, after, 100 * (after - before) / before


def find_llama_server(given: str | None) -> str | None:
    candidates = [given] if given else [str(MODELS / "llama.cpp/build/bin/llama-server"),
                                        "/work/wt/quant/.models/llama.cpp/build/bin/llama-server"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _pick(servers: dict, wanted: list[str]) -> dict:
    keys = {"ours (continuous, 16)": "continuous", "ours (one at a time)": "single"}
    return {label: make for label, make in servers.items() if keys[label] in wanted}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--llama-server", help="a llama.cpp llama-server binary (default: look in .models/)")
    parser.add_argument("--rss-requests", type=int, default=1000)
    parser.add_argument("--models", default="gpt2,smollm2")
    parser.add_argument("--servers", default="continuous,single,llama", help="which servers to run")
    parser.add_argument("--quantization", help="serve SmolLM2 with --quantization (e.g. gguf: the file's blocks)")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}", flush=True)
    counts = [int(c) for c in args.clients.split(",")]

    def requests_for(clients: int) -> int:  # requests per client: fewer clients send more each
        return {1: 4, 4: 2}.get(clients, 1)

    cache = Path(tempfile.gettempdir()) / "leanformers-bench-gpt2-124m"
    gpt2 = gpt2_size_model(cache)
    rows = []
    wanted = args.servers.split(",")
    if "gpt2" in args.models:
        servers = {"ours (continuous, 16)": lambda: ours(gpt2, args.threads, 16),
                   "ours (one at a time)": lambda: ours(gpt2, args.threads, 1)}
        rows += run_matrix("gpt2-124M", _pick(servers, wanted), counts, requests_for, args.max_tokens)
    if "smollm2" in args.models:
        q = args.quantization
        servers = _pick({"ours (continuous, 16)": lambda: ours(str(SMOLLM2), args.threads, 16, GGUF, q),
                         "ours (one at a time)": lambda: ours(str(SMOLLM2), args.threads, 1, GGUF, q)}, wanted)
        binary = find_llama_server(args.llama_server)
        if binary and "llama" in wanted:
            servers["llama.cpp server (16)"] = lambda: llama_cpp(binary, args.threads, 16, 512)
        else:
            print("llama.cpp's llama-server was not found: no llama.cpp rows", flush=True)
        rows += run_matrix("smollm2", servers, counts, requests_for, args.max_tokens)
    print("\nmodel      server                 clients  tok/s   TTFT p50/p99 ms   ITL p50/p99 ms  same text")
    for name, label, clients, r, same in rows:
        print(f"{name:10s} {label:22s} {clients:5d} {r['tok_s']:8.1f} {r['ttft_p50'] * 1000:8.0f}/"
              f"{r['ttft_p99'] * 1000:<7.0f} {r['itl_p50'] * 1000:6.0f}/{r['itl_p99'] * 1000:<6.0f}  {same}")
    by = {(n, lbl, c): r for n, lbl, c, r, _ in rows}
    for name in ("gpt2-124M", "smollm2"):
        batched = by.get((name, "ours (continuous, 16)", max(counts)))
        single = by.get((name, "ours (one at a time)", max(counts)))
        if batched and single:
            print(f"{name}: continuous / one-at-a-time at {max(counts)} clients = "
                  f"{batched['tok_s'] / single['tok_s']:.2f}x")
        llama = by.get((name, "llama.cpp server (16)", max(counts)))
        if batched and llama:
            print(f"{name}: ours / llama.cpp at {max(counts)} clients = {batched['tok_s'] / llama['tok_s']:.2f}x")
    if args.rss_requests:
        before, after, growth = rss_over_requests(gpt2, args.threads, args.rss_requests)
        print(f"RSS over {args.rss_requests} small requests (gpt2-124M): {before:.0f} MB -> {after:.0f} MB "
              f"({growth:+.1f}%)")
    print(f"load average: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
