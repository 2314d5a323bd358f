"""schemathesis over the server's own /openapi.json (valid and invalid bodies, a fixed seed, bounded examples per
operation) against a real uvicorn server with tiny models: never a 5xx, and the server still answers afterwards."""
from __future__ import annotations

import logging

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import transformers
from schemathesis import GenerationMode
from test_serving_support import GPT2_VOCAB, running_server, tiny_bert, tiny_causal_lm

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.CRITICAL)
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/setup.sh"),
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")]
EXAMPLES = 25  # per operation and mode: ~600 requests in all


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from leanformers.serving import create_app

    root = tmp_path_factory.mktemp("fuzz")
    app = create_app(tiny_causal_lm(root / "llama", "llama", positions=64), served_model_name="tiny",
                     embedding_model=tiny_bert(root / "base", "Model"),
                     pipelines={"fill-mask": tiny_bert(root / "mlm", "ForMaskedLM")}, max_body_bytes=256 * 1024)
    with running_server(app) as base:
        yield base


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_on_generated_requests(server, mode):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    failures, calls = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck),
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            nonlocal calls
            calls += 1
            response = case.call(base_url=server, timeout=60)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.body, response.status_code,
                                 response.text[:300]))

        try:
            check()
        except hypothesis.errors.Unsatisfiable:  # no invalid request exists (a GET without parameters)
            assert mode == GenerationMode.NEGATIVE
    assert calls > 100
    assert not failures, failures[:5]
    assert httpx.get(f"{server}/health").status_code == 200
    chat = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            "max_tokens": 3, "temperature": 0}, timeout=60)
    assert chat.status_code == 200 and chat.json()["usage"]["completion_tokens"] <= 3
