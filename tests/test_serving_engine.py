"""The serving engine without HTTP: continuous batching gives each request what it gets alone (greedy ids equal to
generate(), seeded sampling equal to generate() with that seed), rows join and leave mid-batch, stop strings, limits,
cancellation, and the encoder micro-batcher."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import transformers
from test_serving_support import GPT2_VOCAB, assert_same, tiny_bert, tiny_causal_lm

import leanformers
from leanformers.serving.engine import (
    GenerationEngine,
    PipelineBatcher,
    QueueFull,
    SamplingParams,
    TextStream,
)

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/setup.sh")]

PROMPTS = ["Hello, my dog is", "The capital of France", "Once upon a time there was a very long road that", "A",
           "Numbers: one two three four five six seven eight nine ten eleven twelve", "x y"]


@pytest.fixture(scope="module", params=["llama", "gpt2", "llama-int4"])
def lm(request, tmp_path_factory):
    """A tiny Llama, GPT-2, and the Llama on our block kernels (int4-weight: joined layers, one-op decode steps on
    the engine's slot cache), each run alone and batched."""
    architecture, _, quantization = request.param.partition("-")
    folder = tiny_causal_lm(tmp_path_factory.mktemp(request.param), architecture)
    kwargs = {"model_kwargs": {"quantization": quantization + "-weight"}} if quantization else {}
    pipe = leanformers.pipeline("text-generation", model=folder, **kwargs)
    if quantization:
        assert all(block.fused_decode is not None for block in pipe.model.model.layers)
    return pipe.model, pipe.tokenizer


def run_all(engine, handles):
    """Step the engine by hand until every handle finished; returns each one's ids and text."""
    results = [None] * len(handles)
    collected = [([], []) for _ in handles]
    while any(r is None for r in results):
        engine.step()
        for i, handle in enumerate(handles):
            while results[i] is None and not handle._queue.empty():
                delta = handle._queue.get()
                assert delta.error is None, delta.error
                collected[i][0].extend(delta.token_ids)
                collected[i][1].append(delta.text)
                if delta.finish_reason is not None:
                    results[i] = (collected[i][0], "".join(collected[i][1]), delta.finish_reason)
    return results


def solo_generate(model, tokenizer, prompt, **settings):
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), **settings)
    return out[0, ids.shape[1]:].tolist()


def test_greedy_rows_joining_mid_batch_equal_generate_alone(lm):
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=4)
    lengths = [12, 5, 20, 9, 15, 7]
    handles = []
    for i, (prompt, n) in enumerate(zip(PROMPTS, lengths)):
        handles.append(engine.submit(tokenizer(prompt)["input_ids"], SamplingParams(max_new_tokens=n,
                                                                                   temperature=0, ignore_eos=True)))
        if i in (1, 3):  # later requests join a batch that is already decoding
            engine.step()
            engine.step()
    results = run_all(engine, handles)
    for prompt, n, (ids, text, reason) in zip(PROMPTS, lengths, results):
        expected = solo_generate(model, tokenizer, prompt, max_new_tokens=n, do_sample=False, eos_token_id=None)
        assert ids == expected, prompt
        assert text == tokenizer.decode(expected, skip_special_tokens=True)
        assert reason == "length"
    assert engine.running == 0 and engine.cache.rows == 0


def test_seeded_sampling_and_penalties_equal_generate_alone(lm):
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=8)
    settings = [{"temperature": 0.8, "top_p": 0.9, "seed": 3}, {"temperature": 1.3, "top_k": 20, "seed": 4},
                {"temperature": 0, "repetition_penalty": 1.5}, {"temperature": 0.7, "seed": 5}]
    handles = [engine.submit(tokenizer(p)["input_ids"], SamplingParams(max_new_tokens=10, ignore_eos=True, **s))
               for p, s in zip(PROMPTS, settings)]
    results = run_all(engine, handles)
    for prompt, s, (ids, _, _) in zip(PROMPTS, settings, results):
        s = dict(s)
        seed = s.pop("seed", None)
        temperature = s.pop("temperature")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        expected = solo_generate(model, tokenizer, prompt, max_new_tokens=10, do_sample=temperature > 0,
                                 temperature=temperature or 1.0, top_k=s.pop("top_k", 0), eos_token_id=None,
                                 generator=generator, **s)
        assert ids == expected, (prompt, settings)


def test_stop_strings_eos_min_tokens_and_logprobs(lm):
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=4)
    free = run_all(engine, [engine.submit(tokenizer(PROMPTS[0])["input_ids"],
                                          SamplingParams(max_new_tokens=12, temperature=0, ignore_eos=True))])[0]
    stop = free[1][3:6]  # a piece of the text it will write
    ids, text, reason = run_all(engine, [engine.submit(tokenizer(PROMPTS[0])["input_ids"], SamplingParams(
        max_new_tokens=12, temperature=0, ignore_eos=True, stop=(stop,)))])[0]
    assert reason == "stop" and text == free[1][:free[1].find(stop)]
    # the first generated token as a stop token id; min_new_tokens keeps it from ending before 3 tokens
    first = free[0][0]
    ids, _, reason = run_all(engine, [engine.submit(tokenizer(PROMPTS[0])["input_ids"], SamplingParams(
        max_new_tokens=12, temperature=0, stop_token_ids=(first,)))])[0]
    assert reason == "stop" and ids == [first]
    handle = engine.submit(tokenizer(PROMPTS[1])["input_ids"], SamplingParams(
        max_new_tokens=3, temperature=0, ignore_eos=True, logprobs=True, top_logprobs=2))
    run_all(engine, [handle])


def test_text_stream_holds_partial_stop_strings():
    tokenizer = leanformers.AutoTokenizer.from_pretrained(str(GPT2_VOCAB))
    ids = tokenizer("Hello world, the end is near", add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, ("the end",), True)
    pieces = [stream.add(i) for i in ids]
    assert "".join(pieces) == "Hello world, " and stream.stopped
    stream = TextStream(tokenizer, ("zzz",), True)
    assert "".join(stream.add(i) for i in ids) + stream.flush() == "Hello world, the end is near"
    stream = TextStream(tokenizer, (), True)
    emoji = tokenizer("café 🙂", add_special_tokens=False)["input_ids"]
    assert "\ufffd" not in "".join(stream.add(i) for i in emoji)


def test_cancel_queue_bound_and_context_limit(lm):
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=2, max_queue=2)
    params = SamplingParams(max_new_tokens=50, temperature=0, ignore_eos=True)
    a = engine.submit(tokenizer(PROMPTS[0])["input_ids"], params)
    b = engine.submit(tokenizer(PROMPTS[1])["input_ids"], params)
    with pytest.raises(QueueFull):
        engine.submit(tokenizer(PROMPTS[2])["input_ids"], params)
    engine.step()
    assert engine.running == 2
    a.cancel()
    engine.step()
    assert engine.running == 1
    too_long = engine.submit([1] * 10, SamplingParams(max_new_tokens=10 ** 6))
    b.cancel()
    engine.step()
    delta = too_long._queue.get()
    assert delta.status == 400 and "context" in delta.error
    with pytest.raises(ValueError):
        engine.submit([], params)


def test_engine_thread_serves_concurrent_callers(lm):
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=3)
    engine.start()
    try:
        outputs = {}

        def call(i):
            with engine.tokenizer_lock:
                prompt = tokenizer(PROMPTS[i])["input_ids"]
            handle = engine.submit(prompt, SamplingParams(
                max_new_tokens=4 + i, temperature=0, ignore_eos=True))
            outputs[i] = [t for delta in handle for t in delta.token_ids]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        engine.stop()
    for i, prompt in enumerate(PROMPTS):
        assert outputs[i] == solo_generate(model, tokenizer, prompt, max_new_tokens=4 + i, do_sample=False,
                                           eos_token_id=None)


def test_pipeline_batcher_results_equal_alone(tmp_path):
    folder = tiny_bert(tmp_path / "ner", "ForTokenClassification",
                       id2label={0: "O", 1: "B-PER", 2: "I-PER"}, label2id={"O": 0, "B-PER": 1, "I-PER": 2})
    pipe = leanformers.pipeline("token-classification", model=folder)
    batcher = PipelineBatcher(pipe, max_batch_size=4, max_wait=0.05)
    texts = ["Sarah lives in Paris.", "ok", "John Smith met Mary at the office in Berlin yesterday.", "Hi there"]
    futures = [batcher.submit(text, {"aggregation_strategy": "simple"}) for text in texts]
    futures.append(batcher.submit(texts[:2], {}))
    bad = batcher.submit(42, {"aggregation_strategy": "simple"})
    results = [future.result(30) for future in futures]
    with pytest.raises((TypeError, ValueError)):
        bad.result(30)
    batcher.stop()  # the pipeline's tokenizer is the batcher thread's until here
    for text, result in zip(texts, results):
        assert_same(result, pipe(text, aggregation_strategy="simple"))
    assert_same(results[-1], pipe(texts[:2]))


def test_importing_leanformers_and_the_engine_loads_no_web_framework():
    code = ("import sys, leanformers, leanformers.serving, leanformers.serving.engine; "
            "assert not {'fastapi', 'uvicorn', 'starlette'} & set(sys.modules), sorted(sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_rows_that_finish_at_their_first_token_leave_alone(lm):
    """A request done after one token (max_tokens=1) joins a running batch: only it leaves; the others go on."""
    model, tokenizer = lm
    engine = GenerationEngine(model, tokenizer, max_batch_size=4)
    long = [engine.submit(tokenizer(p)["input_ids"], SamplingParams(max_new_tokens=8, temperature=0,
                                                                    ignore_eos=True)) for p in PROMPTS[:2]]
    engine.step()
    short = engine.submit(tokenizer(PROMPTS[2])["input_ids"], SamplingParams(max_new_tokens=1, temperature=0))
    results = run_all(engine, long + [short])
    for prompt, (ids, _, _) in zip(PROMPTS, results[:2]):
        assert ids == solo_generate(model, tokenizer, prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert len(results[2][0]) == 1 and results[2][2] == "length"
