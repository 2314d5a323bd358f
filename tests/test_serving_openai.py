"""The official `openai` client against a real uvicorn server on 127.0.0.1 serving the real SmolLM2-135M-Instruct
(GGUF Q4_1) and the real all-MiniLM-L6-v2: chat (stream and not), completions, embeddings (the sentence-transformers
similarities 0.755 / 0.689 / 0.009), models, tokenize, errors in OpenAI's shape, metrics."""
from __future__ import annotations

import logging
import os

import httpx
import numpy as np
import openai
import pytest
from test_serving_support import (
    ARTIFACTS,
    CHROMIUM,
    MINILM,
    SMOLLM2,
    SMOLLM2_GGUF,
    chromium_page,
    running_server,
)

logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = pytest.mark.skipif(not (SMOLLM2 / SMOLLM2_GGUF).exists() or not (MINILM / "tokenizer.json").exists(),
                                reason="run scripts/setup.sh to fetch the real models")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
             "The stock market crashed today."]


@pytest.fixture(scope="module")
def server():
    from leanformers.serving import create_app

    app = create_app(str(SMOLLM2), gguf_file=SMOLLM2_GGUF, served_model_name="smollm2",
                     embedding_model=str(MINILM), api_key="test-key", threads=1, max_batch_size=4)
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="test-key", max_retries=0, timeout=120)


def test_chat_non_stream_answers_paris(client):
    response = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=16)
    choice = response.choices[0]
    assert choice.message.content == "The capital of France is Paris."
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert response.usage.prompt_tokens == 37 and response.usage.completion_tokens == 8
    assert response.usage.total_tokens == 45 and response.object == "chat.completion"


def test_chat_stream_with_usage_and_logprobs(client):
    stream = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=16,
                                            stream=True, stream_options={"include_usage": True}, logprobs=True,
                                            top_logprobs=2)
    pieces, reasons, usage, logprobs = [], [], None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
            if choice.logprobs is not None:
                logprobs += choice.logprobs.content
    assert "".join(pieces) == "The capital of France is Paris."
    assert reasons[-1] == "stop" and len([p for p in pieces if p]) >= 5  # it streamed, not one lump
    assert usage.completion_tokens == 8 and usage.prompt_tokens == 37
    assert len(logprobs) == 8 and logprobs[0].token == "The" and len(logprobs[0].top_logprobs) == 2
    assert logprobs[0].top_logprobs[0].token == "The" and logprobs[0].logprob <= 0


def test_chat_length_stop_n_and_seed(client):
    short = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.choices[0].message.content == "The capital of"
    stopped = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=16,
                                             stop=[" is"])
    assert stopped.choices[0].message.content == "The capital of France"
    assert stopped.choices[0].finish_reason == "stop"
    sampled = [client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=1.0, seed=7,
                                              max_tokens=8, n=2) for _ in range(2)]
    assert [c.message.content for c in sampled[0].choices] == [c.message.content for c in sampled[1].choices]
    assert len(sampled[0].choices) == 2 and sampled[0].usage.completion_tokens <= 16


def test_completions(client):
    response = client.completions.create(model="smollm2", prompt=["The capital of France is", "1, 2, 3,"],
                                         temperature=0, max_tokens=4)
    assert len(response.choices) == 2 and all(c.finish_reason == "length" for c in response.choices)
    assert response.choices[1].text.strip().startswith("4")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=4, stream=True))
    assert streamed == response.choices[0].text
    echoed = client.completions.create(model="smollm2", prompt="1, 2, 3,", temperature=0, max_tokens=2, echo=True,
                                       logprobs=1)
    assert echoed.choices[0].text.startswith("1, 2, 3,") and len(echoed.choices[0].logprobs.tokens) == 2


def test_embeddings_real_minilm(client):
    floats = client.embeddings.create(model=str(MINILM), input=SENTENCES, encoding_format="float")
    vectors = np.array([d.embedding for d in floats.data])
    assert vectors.shape == (4, 384) and floats.usage.prompt_tokens > 0
    similarity = vectors[0] @ vectors[1:].T / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1:], axis=1)
    assert [round(float(s), 3) for s in similarity] == [0.755, 0.689, 0.009]
    default = client.embeddings.create(model=str(MINILM), input=SENTENCES)  # the client asks for base64
    assert np.allclose(np.array([d.embedding for d in default.data]), vectors, atol=1e-6)
    single = client.embeddings.create(model=str(MINILM), input=SENTENCES[0], encoding_format="float")
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-5)


def test_models_and_errors_in_openai_shape(client, server):
    assert sorted(m.id for m in client.models.list().data) == sorted(["smollm2", str(MINILM)])
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4", messages=QUESTION)
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=10 ** 6)
    assert "context" in err.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    raw = httpx.post(f"{server}/v1/chat/completions", content=b"{not json", headers={
        "Authorization": "Bearer test-key", "Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    raw = httpx.post(f"{server}/v1/chat/completions", json={"messages": QUESTION, "max_tokenz": 3},
                     headers={"Authorization": "Bearer test-key"})
    assert raw.status_code == 400 and "max_tokenz" in raw.json()["error"]["message"]


def test_tokenize_detokenize_health_metrics(server):
    tokens = httpx.post(f"{server}/tokenize", json={"messages": QUESTION}).json()
    assert tokens["count"] == 37 and tokens["tokens"][:3] == [1, 9690, 198]
    text = httpx.post(f"{server}/detokenize", json={"tokens": [504, 3575, 282, 4649]}).json()["prompt"]
    assert text == "The capital of France"
    assert httpx.post(f"{server}/detokenize", json={"tokens": [-1]}).status_code == 400
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    metrics = httpx.get(f"{server}/metrics").text
    assert 'leanformers_requests_total{route="/v1/chat/completions",status="200"}' in metrics
    assert "leanformers_time_to_first_token_seconds_bucket" in metrics
    assert "leanformers_running_batch_size 0" in metrics


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_playground_chat_streams_paris_in_chromium(server):
    """Type the question into the playground in a real headless Chromium; the answer streams in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server)
        page.fill("#api-key", "test-key")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#tabs button[data-tab=chat].active")
        assert "chat: smollm2" in page.inner_text("#served")
        page.fill("#chat-input", "What is the capital of France?")
        page.fill("#chat-max-tokens", "24")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('.message.assistant') && "
                               "document.querySelector('.message.assistant').textContent.includes('Paris')",
                               timeout=120_000)
        page.wait_for_selector(".message.assistant:not(.streaming)", timeout=120_000)
        assert page.inner_text(".message.assistant") == "The capital of France is Paris."
        assert page.inner_text(".message.user") == "What is the capital of France?"
        page.screenshot(path=str(ARTIFACTS / "playground_chat.png"), full_page=True)
        page.click("#tabs button[data-tab=embeddings]")
        page.click("#embed-run")
        page.wait_for_selector("table.sim")
        cells = page.locator("table.sim tr").nth(1).locator("td").all_inner_texts()
        assert cells == ["1.000", "0.755", "0.689", "0.009"]
        page.screenshot(path=str(ARTIFACTS / "playground_similarity.png"), full_page=True)
        assert not errors, errors
