"""The command line: arguments or stdin lines in, the pipeline's results out as JSON."""
from __future__ import annotations

import io
import json
import sys

import pytest

import leanformers
from leanformers import cli
from test_pipelines import LABELS, MINILM, assert_same, make_checkpoint, needs_minilm

pytestmark = needs_minilm


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    labels = LABELS["text"]
    return {"text": make_checkpoint(root / "text", "ForSequenceClassification", id2label=labels,
                                    label2id={v: k for k, v in labels.items()}),
            "qa": make_checkpoint(root / "qa", "ForQuestionAnswering")}


def run_cli(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_arguments_and_stdin(folders, capsys, monkeypatch):
    texts = ["I love this movie!", "Terrible."]
    pipe = leanformers.pipeline("sentiment-analysis", model=folders["text"])
    code, out, _ = run_cli(["sentiment-analysis", texts[0], "--model", folders["text"]], capsys)
    assert code == 0
    assert_same(pipe(texts[0]), json.loads(out))  # the CLI batches by 8: equal within ATOL, not bit for bit
    code, out, _ = run_cli(["sentiment-analysis", *texts, "--model", folders["text"], "--top-k", "2"], capsys)
    assert code == 0
    assert_same(pipe(texts, top_k=2), json.loads(out))
    code, out, _ = run_cli(["text-classification", "--model", folders["text"], "--option", "top_k=null"], capsys,
                           stdin="\n".join(texts) + "\n\n", monkeypatch=monkeypatch)
    assert code == 0
    assert_same(pipe(texts, top_k=None), [json.loads(line) for line in out.splitlines()])


def test_question_answering_and_embeddings(folders, capsys, monkeypatch):
    context = "Hugging Face is based in New York City. It was founded in 2016."
    qa = leanformers.pipeline("question-answering", model=folders["qa"])
    code, out, _ = run_cli(["question-answering", "Where?", "--context", context, "--model", folders["qa"]], capsys)
    assert code == 0 and json.loads(out) == qa(question="Where?", context=context)
    code, out, _ = run_cli(["feature-extraction", "--model", str(MINILM), "--pooling", "auto"], capsys,
                           stdin="A man is eating food.\n", monkeypatch=monkeypatch)
    assert code == 0 and len(json.loads(out)) == 384


def test_errors_are_one_line(folders, capsys):
    code, _, err = run_cli(["no-such-task", "x", "--model", folders["text"]], capsys)
    assert code == 2 and "Unknown task 'no-such-task'" in err and "text-classification" in err
    code, _, err = run_cli(["question-answering", "Where?", "--model", folders["qa"]], capsys)
    assert code == 2 and "--context" in err
    code, _, err = run_cli(["fill-mask", "no mask here", "--model", folders["text"]], capsys)
    assert code == 2 and "No mask_token ([MASK])" in err


def test_chat_flag_only_for_text_generation(folders, capsys):
    code, _, err = run_cli(["sentiment-analysis", "Hi", "--model", folders["text"], "--chat"], capsys)
    assert code == 2 and "--chat is for text-generation" in err
    assert list(cli._inputs("text-generation", ["Hi"], {}, chat=True)) == [[{"role": "user", "content": "Hi"}]]


SMOLLM2 = MINILM.parent / "smollm2"


@pytest.mark.skipif(not (SMOLLM2 / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file(), reason="run fetch_models.sh")
def test_chat_with_the_real_gguf_model(capsys):
    """The README's main job: the real SmolLM2 GGUF answers through `leanformers text-generation --chat`."""
    code, out, _ = run_cli(["text-generation", "What is the capital of France?", "--chat", "--model", str(SMOLLM2),
                            "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", "--max-new-tokens", "16",
                            "--option", "do_sample=false"], capsys)
    assert code == 0
    answer = {"role": "assistant", "content": "The capital of France is Paris."}
    assert json.loads(out)[0]["generated_text"][-1] == answer
