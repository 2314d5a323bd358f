"""Task endpoints over raw HTTP (httpx, as curl would) on tiny random checkpoints: each answers what
pipeline(task)(inputs, **parameters) answers; a bounded concurrency run (32 clients, 200 mixed requests) with zero
5xx and every greedy answer equal to its solo run; limits (queue, body size, input tokens), API key, CORS."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random

import httpx
import pytest
import transformers
from test_serving_support import (
    ARTIFACTS,
    CHROMIUM,
    GPT2_VOCAB,
    NER_LABELS,
    assert_same,
    chromium_page,
    running_server,
    tiny_bert,
    tiny_causal_lm,
    tiny_t5,
)

import leanformers

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/setup.sh"),
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")]
KEY = {"Authorization": "Bearer k"}


def labels(mapping):
    return {"id2label": mapping, "label2id": {v: k for k, v in mapping.items()}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_tasks")
    nli = {0: "contradiction", 1: "neutral", 2: "entailment"}
    t5 = tiny_t5(root / "t5")
    return {
        "text-generation": tiny_causal_lm(root / "llama", "llama"),
        "token-classification": tiny_bert(root / "ner", "ForTokenClassification", **labels(NER_LABELS)),
        "question-answering": tiny_bert(root / "qa", "ForQuestionAnswering"),
        "fill-mask": tiny_bert(root / "mlm", "ForMaskedLM"),
        "text-classification": tiny_bert(root / "cls", "ForSequenceClassification",
                                         **labels({0: "negative", 1: "positive"})),
        "zero-shot-classification": tiny_bert(root / "nli", "ForSequenceClassification", **labels(nli)),
        "feature-extraction": tiny_bert(root / "base", "Model"),
        "summarization": t5, "translation_en_to_de": t5, "text2text-generation": t5,
    }


@pytest.fixture(scope="module")
def server(folders):
    from leanformers.serving import create_app

    pipelines = {task: folder for task, folder in folders.items() if task != "text-generation"}
    app = create_app(folders["text-generation"], served_model_name="tiny", pipelines=pipelines, api_key="k",
                     max_batch_size=8, max_queue=256, max_input_tokens=200, max_body_bytes=64 * 1024,
                     cors_origins=("http://allowed.example",))
    with running_server(app) as base:
        yield base


CASES = [
    ("token-classification", "Sarah Connor met John in Los Angeles.", {"aggregation_strategy": "simple"}),
    ("ner", ["Hugging Face is in New York.", "Paris"], {}),
    ("question-answering", {"question": "Where does Sarah live?", "context": "Sarah lives in Paris, France."},
     {"top_k": 2}),
    ("fill-mask", "Paris is the [MASK] of France.", {"top_k": 3}),
    ("text-classification", ["I love this!", "awful"], {"top_k": None}),
    ("sentiment-analysis", "great movie", {}),
    ("zero-shot-classification", "The team won the match.", {"candidate_labels": ["sports", "politics"]}),
    ("feature-extraction", "Hello world", {"pooling": "mean", "normalize": True}),
    ("summarization", "The quick brown fox jumps over the lazy dog again and again.", {"max_new_tokens": 6}),
    ("translation_en_to_de", "The house is wonderful.", {"max_new_tokens": 6}),
    ("text2text-generation", "question: what is this?", {"max_new_tokens": 5}),
    ("text-generation", "Once upon a time", {"max_new_tokens": 6, "do_sample": False}),
]


@pytest.mark.parametrize("task,inputs,parameters", CASES, ids=[c[0] for c in CASES])
def test_task_endpoint_equals_pipeline(server, folders, task, inputs, parameters):
    response = httpx.post(f"{server}/v1/pipelines/{task}", json={"inputs": inputs, "parameters": parameters},
                          headers=KEY, timeout=60)
    assert response.status_code == 200, response.text
    canonical = {"ner": "token-classification", "sentiment-analysis": "text-classification"}.get(task, task)
    pipe = leanformers.pipeline(task, model=folders[canonical])
    expected = json.loads(json.dumps(_plain(pipe(inputs, **parameters))))
    assert_same(response.json(), expected)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def test_task_errors_are_4xx_with_a_message(server):
    def post(path, body, **kw):
        return httpx.post(f"{server}{path}", json=body, headers=KEY, timeout=30, **kw)

    cases = [
        ("/v1/pipelines/no-such-task", {"inputs": "x"}, 404, "no-such-task"),
        ("/v1/pipelines/fill-mask", {"inputs": "no mask here"}, 400, "mask"),
        ("/v1/pipelines/fill-mask", {"inputs": "a [MASK]", "parameters": {"top_kk": 1}}, 400, "top_kk"),
        ("/v1/pipelines/question-answering", {"inputs": 42}, 400, ""),
        ("/v1/pipelines/token-classification", {"inputs": [[1, 2]]}, 400, ""),
        ("/v1/pipelines/token-classification", {"text": "x"}, 400, "inputs"),
        ("/v1/pipelines/translation_en_to_fr", {"inputs": "x"}, 404, "translation_en_to_de"),
        ("/v1/pipelines/text-generation", {"inputs": "x", "parameters": {"max_new_tokens": 10 ** 6}}, 400, "limit"),
        ("/v1/pipelines/token-classification", {"inputs": "x", "parameters": {"batch_size": 99}}, 400, "batch_size"),
        ("/v1/embeddings", {"input": []}, 400, "empty"),
        ("/v1/embeddings", {"input": "x", "model": "nope"}, 404, "nope"),
        ("/v1/completions", {"prompt": "word " * 300, "max_tokens": 2}, 400, "200"),
        ("/v1/completions", {"prompt": [99999999], "max_tokens": 2}, 400, "vocabulary"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 400, ""),
    ]
    for path, body, status, words in cases:
        response = post(path, body)
        assert response.status_code == status, (path, body, response.text)
        error = response.json()["error"]
        assert words in error["message"] and error["type"], (path, error)
    big = httpx.post(f"{server}/v1/pipelines/fill-mask", content=b"x" * (65 * 1024), headers=KEY)
    assert big.status_code == 413 and "limit" in big.json()["error"]["message"]
    assert httpx.post(f"{server}/v1/pipelines/fill-mask", json={"inputs": "a [MASK]"}).status_code == 401
    assert httpx.get(f"{server}/v1/nowhere", headers=KEY).status_code == 404
    assert httpx.get(f"{server}/v1/pipelines", headers=KEY).json()["chat"] == "tiny"


def test_cors_only_for_the_given_origin(server):
    allowed = httpx.options(f"{server}/v1/models", headers={"Origin": "http://allowed.example",
                                                            "Access-Control-Request-Method": "GET"})
    assert allowed.headers.get("access-control-allow-origin") == "http://allowed.example"
    other = httpx.options(f"{server}/v1/models", headers={"Origin": "http://evil.example",
                                                          "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


def _requests():
    """40 distinct requests: greedy chats and completions of several lengths, seeded samples, task calls."""
    rng = random.Random(0)
    words = ["the", "a", "dog", "cat", "runs", "jumps", "over", "under", "big", "small", "red", "blue", "house", "tree",
             "river"]
    out = []
    for i in range(40):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        kind = i % 5
        if kind in (0, 1):
            out.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": text}], "temperature": 0,
                                                 "max_tokens": rng.randint(1, 24), "ignore_eos": True}))
        elif kind == 2:
            out.append(("/v1/completions", {"prompt": text, "temperature": 0, "max_tokens": rng.randint(1, 24),
                                            "stream": i % 2 == 0}))
        elif kind == 3:
            out.append(("/v1/completions", {"prompt": text, "temperature": 0.9, "seed": i, "top_p": 0.9,
                                            "max_tokens": rng.randint(1, 16)}))
        else:
            out.append(("/v1/pipelines/fill-mask", {"inputs": text + " [MASK] .", "parameters": {"top_k": 2}}))
    return out


async def _call(client, path, body):
    if body.get("stream"):
        text = []
        async with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                return response.status_code, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    text.append(json.loads(line[6:])["choices"][0]["text"])
        return 200, "".join(text)
    response = await client.post(path, json=body)
    if response.status_code != 200:
        return response.status_code, response.text
    data = response.json()
    if "choices" in data:
        choice = data["choices"][0]
        return 200, choice.get("text", choice.get("message", {}).get("content"))
    return 200, data


def test_concurrent_mixed_requests_equal_their_solo_runs(server):
    requests = _requests()

    async def solo():
        async with httpx.AsyncClient(base_url=server, headers=KEY, timeout=120) as client:
            return [await _call(client, path, body) for path, body in requests]

    expected = asyncio.run(solo())
    assert all(status == 200 for status, _ in expected), expected
    order = [i % len(requests) for i in range(200)]
    random.Random(1).shuffle(order)

    async def burst():
        limit = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=server, headers=KEY, timeout=300,
                                     limits=httpx.Limits(max_connections=32)) as client:
            async def one(i):
                async with limit:
                    return await _call(client, *requests[i])
            return await asyncio.gather(*(one(i) for i in order))

    results = asyncio.run(burst())
    assert not [r for r in results if r[0] >= 500]
    for i, result in zip(order, results):
        if isinstance(expected[i][1], str):  # generated text: identical
            assert result == expected[i], (requests[i], result, expected[i])
        else:  # fill-mask scores: a micro-batch pads, float noise only
            assert_same(result[1], expected[i][1])
    metrics = httpx.get(f"{server}/metrics").text
    assert "leanformers_running_batch_size 0" in metrics
    peak_line = next(line for line in metrics.splitlines() if line.startswith("leanformers_peak_batch_size "))
    peak = int(peak_line.split()[1])
    assert peak >= 4  # requests really shared decoding steps


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_playground_task_forms_in_chromium(server):
    """Each served task has a form; results show as highlighted entities, a marked answer, score bars."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.add_init_script("localStorage.setItem('leanformers-key', 'k')")
        page.goto(server)
        page.click("#tabs button[data-tab=tasks]")
        for task in ("token-classification", "question-answering", "zero-shot-classification", "fill-mask",
                     "text-classification", "summarization"):
            page.click(f"#task-{task} button")
        page.wait_for_selector("#task-token-classification .result .entity")
        page.wait_for_selector("#task-question-answering .result mark")
        page.wait_for_selector("#task-zero-shot-classification .result .bar")
        page.wait_for_selector("#task-summarization .result pre.output")
        assert page.locator("#task-fill-mask .result .bar").count() == 5
        assert page.locator("#task-text-classification .result .bar").count() == 2
        context = "Sarah lives in Paris, the capital of France."
        assert page.inner_text("#task-question-answering mark") in context
        assert not page.locator(".result .error").count()
        page.screenshot(path=str(ARTIFACTS / "playground_tasks.png"), full_page=True)
        assert not errors, errors
