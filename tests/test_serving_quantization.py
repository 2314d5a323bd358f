"""`leanformers serve --quantization MODE` reaches the served model: its answers are the quantized pipeline's
(nearer to them than to float32's, within 0.99 cosine of float32); an unknown mode is refused before anything loads,
naming the valid modes."""
from __future__ import annotations

import httpx
import pytest
import torch
from test_serving_support import MINILM, running_server, tiny_bert

import leanformers
from leanformers.modeling import quant

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (MINILM / "vocab.txt").exists(), reason="run scripts/setup.sh"),
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")]
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]


def test_served_int8_embeddings_equal_the_int8_pipeline(tmp_path):
    from leanformers.serving import create_app

    folder = tiny_bert(tmp_path / "bert", "Model")
    app = create_app(folder, task="feature-extraction", served_model_name="tiny", quantization="int8")
    with running_server(app) as base:
        reply = httpx.post(f"{base}/v1/embeddings", json={"model": "tiny", "input": TEXTS}, timeout=60)
    assert reply.status_code == 200, reply.text
    got = torch.nn.functional.normalize(torch.tensor([row["embedding"] for row in reply.json()["data"]]), dim=-1)
    int8 = leanformers.pipeline("feature-extraction", model=folder, model_kwargs={"quantization": "int8"})
    fp32 = leanformers.pipeline("feature-extraction", model=folder)
    assert any(isinstance(m, quant.Int8DynamicLinear) for m in int8.model.modules())

    def mean_pooled(pipe):  # sentence-transformers' pooling, as /v1/embeddings makes it
        rows = []
        for text in TEXTS:
            batch = pipe.tokenizer(text, return_tensors="pt")
            with torch.no_grad():
                hidden = pipe.model(**batch).last_hidden_state[0]
            rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=-1))
        return torch.stack(rows)

    expected, reference = mean_pooled(int8), mean_pooled(fp32)
    assert got.shape == expected.shape
    # the quantized model is served, not the float one; int8 activation scales are per call, so the served batch
    # of three is close to (not equal to) each text run alone
    assert (got - reference).abs().max().item() > 1e-4 and (got * reference).sum(-1).min().item() > 0.99
    assert (got * expected).sum(-1).min().item() > (got * reference).sum(-1).min().item()


def test_unknown_quantization_is_refused_at_once(tmp_path):
    from leanformers.serving import create_app

    with pytest.raises(ValueError, match="unknown quantization 'int3'.*'int8-weight'"):
        create_app(str(tmp_path), task="feature-extraction", quantization="int3")


def test_serve_cli_refuses_an_unknown_quantization():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run([sys.executable, "-m", "leanformers.cli", "serve", "--model", "x", "--quantization",
                             "int3"], env=env, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "unknown --quantization 'int3'" in result.stderr and "int4-weight" in result.stderr
