"""`leanformers serve` as a real process: a client that goes away has its rows freed (generation stops), SIGTERM
lets the running stream finish, refuses new requests and exits 0. The process is always stopped."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_serving_support import GPT2_VOCAB, free_port, tiny_causal_lm

pytestmark = pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/setup.sh")
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tiny_causal_lm(tmp_path_factory.mktemp("lifecycle"), "llama", positions=4096)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "leanformers.cli", "serve", "--model", folder, "--port",
                                str(port), "--threads", "1", "--drain-timeout", "60", "--log-level", "warning"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _metric(base, name) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def _stream(base, max_tokens):
    return httpx.stream("POST", f"{base}/v1/completions", timeout=120, json={
        "prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "ignore_eos": True})


def test_a_client_that_goes_away_frees_its_row(served):
    base, _ = served
    before = _metric(base, "leanformers_generated_tokens_total")
    with _stream(base, 4000) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    # the connection is closed here, long before 4000 tokens
    deadline = time.monotonic() + 60
    while _metric(base, "leanformers_running_batch_size") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(base, "leanformers_running_batch_size") == 0
    assert _metric(base, "leanformers_generated_tokens_total") - before < 4000


def test_a_slow_reader_does_not_stall_the_others(served):
    """A client that sends a streaming request and never reads: the other requests still complete."""
    base, _ = served
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 1500, "temperature": 0, "stream": True,
                       "ignore_eos": True, "logprobs": 5}).encode()
    with socket.create_connection((host, int(port))) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        for prompt in ("one", "two", "three"):
            reply = httpx.post(f"{base}/v1/completions", timeout=120, json={
                "prompt": prompt, "max_tokens": 5, "temperature": 0, "ignore_eos": True})
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 5


def test_sigterm_drains_the_running_stream_and_refuses_new_requests(served):
    base, process = served
    texts, refused = [], None
    with _stream(base, 300) as response:
        for line in response.iter_lines():
            if not line:  # the blank line after each event
                continue
            if line == "data: [DONE]":
                texts.append(line)
                continue
            texts.append(json.loads(line[6:])["choices"][0])
            if refused is None:  # after the first token: stop the server
                process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                try:
                    refused = httpx.get(f"{base}/health", timeout=5).status_code
                except httpx.TransportError:
                    refused = "connection refused"
    choices = [t for t in texts if isinstance(t, dict)]
    assert texts[-1] == "data: [DONE]" and choices[-1]["finish_reason"] == "length"
    assert refused in (503, "connection refused")
    assert process.wait(60) == 0


def test_serve_without_a_model_is_a_usage_error():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-m", "leanformers.cli", "serve"], env=env, check=False,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--model" in result.stderr
