"""The Ray engine on a real local Ray (2 CPUs, 2 actors): the same rows, errors and values as the local engine and
as direct pipeline calls, for JSON lines (with bad rows), CSV (question answering, named columns) and Parquet (the
real MiniLM's sentence embeddings)."""
from __future__ import annotations

import json

import pytest
from test_batch import (
    QA_CONTEXT,
    QUESTIONS,
    bad_rows_file,
    read_jsonl,
    results_by_id,
    write_csv,
    write_parquet,
)
from test_pipelines import LABELS, MINILM, assert_same, make_checkpoint, needs_minilm

import leanformers
from leanformers import batch

ray = pytest.importorskip("ray", reason="the Ray engine needs leanformers[ray]")
pytestmark = [needs_minilm, pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs and a small object store, started for these tests and shut down after them."""
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False,
             logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_ray_models")
    labels = LABELS["text"]
    return {"text": make_checkpoint(root / "text", "ForSequenceClassification", id2label=labels,
                                    label2id={v: k for k, v in labels.items()}),
            "qa": make_checkpoint(root / "qa", "ForQuestionAnswering")}


def both_engines(task, model, path, tmp_path, **kwargs) -> tuple[str, str, dict]:
    """Run `task` over `path` with the local engine and with Ray (2 actors); (local output, ray output, summary)."""
    local, remote = str(tmp_path / "local.jsonl"), str(tmp_path / "ray.jsonl")
    batch.run(task, model, path, local, quiet=True, **kwargs)
    summary = batch.run(task, model, path, remote, engine="ray", num_workers=2, quiet=True, **kwargs)
    return local, remote, summary


def test_ray_equals_local_and_direct_calls_with_bad_rows(local_ray, folders, tmp_path):
    path, good, _ = bad_rows_file(tmp_path)
    local, remote, summary = both_engines("text-classification", folders["text"], path, tmp_path, batch_size=4,
                                          chunk_size=8, options={"top_k": None})
    assert (summary["rows"], summary["ok"], summary["errors"]) == (60, 54, 6)
    assert read_jsonl(local + ".errors.jsonl") == read_jsonl(remote + ".errors.jsonl")
    on_ray = results_by_id(remote)
    assert list(on_ray) == sorted(good)
    assert_same(results_by_id(local), on_ray)
    pipe = leanformers.pipeline("text-classification", model=folders["text"])
    assert_same(pipe([good[i] for i in sorted(good)], top_k=None), [on_ray[i] for i in sorted(good)])


def test_ray_csv_question_answering(local_ray, folders, tmp_path):
    rows = [{"id": str(i), "q": q, "ctx": QA_CONTEXT} for i, q in enumerate(QUESTIONS * 5)]
    rows[4]["q"] = ""  # an empty question: a bad row on both engines
    path = write_csv(tmp_path / "qa.csv", rows, ["id", "q", "ctx"])
    local, remote, summary = both_engines("question-answering", folders["qa"], path, tmp_path, columns="q,ctx",
                                          chunk_size=4)
    assert (summary["ok"], summary["errors"]) == (14, 1)
    assert read_jsonl(remote + ".errors.jsonl") == [{"id": 4, "error": "column 'q' is empty"}]
    qa = leanformers.pipeline("question-answering", model=folders["qa"])
    on_ray = results_by_id(remote)
    expected = qa([{"question": r["q"], "context": r["ctx"]} for r in rows if r["q"]])
    assert_same(expected, [on_ray[i] for i in sorted(on_ray)])
    assert_same(results_by_id(local), on_ray)


def test_ray_real_minilm_embeddings_from_parquet(local_ray, tmp_path):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
                 "The stock market crashed today."] * 5
    path = write_parquet(tmp_path / "in.parquet", [{"sentence": s} for s in sentences])
    local, remote, summary = both_engines("feature-extraction", str(MINILM), path, tmp_path, column="sentence",
                                          chunk_size=6, options={"pooling": "auto"})
    assert summary["ok"] == 20
    on_ray = results_by_id(remote)
    pipe = leanformers.pipeline("feature-extraction", model=str(MINILM))
    expected = [r.tolist() if hasattr(r, "tolist") else r for r in pipe(sentences, pooling="auto")]
    assert_same(expected, [on_ray[i] for i in range(20)])
    assert_same(results_by_id(local), on_ray)
    with open(remote + ".progress.json") as file:
        assert json.load(file)["done"]
