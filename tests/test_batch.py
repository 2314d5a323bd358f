"""Batch inference over files (local engine): equal to direct pipeline calls, bad rows routed to the errors file,
resumable after an interruption and after SIGKILL of a real subprocess, and the `leanformers batch` command."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipelines import LABELS, MINILM, assert_same, make_checkpoint, needs_minilm

import leanformers
from leanformers import batch, cli

pytestmark = [needs_minilm, pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")]
SRC = Path(__file__).resolve().parents[1] / "src"
WORDS = ["great", "awful", "fine", "the plot", "New York", "slow", "a long and winding sentence about films"]
QA_CONTEXT = "Hugging Face is based in New York City. It was founded in 2016 by French entrepreneurs."
QUESTIONS = ["Where is Hugging Face based?", "When was it founded?", "Who founded it?"]


def texts(n: int) -> list[str]:
    """n short texts of varied length (so that length-sorted batching reorders them)."""
    return [f"{WORDS[i % 7]} row {i} " + "very " * (i % 5) + WORDS[(i * 3) % 7] for i in range(n)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_models")
    labels = LABELS["text"]
    return {"text": make_checkpoint(root / "text", "ForSequenceClassification", id2label=labels,
                                    label2id={v: k for k, v in labels.items()}),
            "qa": make_checkpoint(root / "qa", "ForQuestionAnswering")}


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as file:
        file.writelines((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    return str(path)


def write_csv(path, rows, fields) -> str:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def write_parquet(path, rows) -> str:
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path, row_group_size=37)  # several row groups
    return str(path)


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def results_by_id(path) -> dict:
    rows = read_jsonl(path)
    ids = [row["id"] for row in rows]
    assert ids == sorted(set(ids)), "ids must be unique and in input order"
    return {row["id"]: row["result"] for row in rows}


# ---------------------------------------------------------------- equal to direct calls, in every input format
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_equals_direct_pipeline_calls(folders, tmp_path, fmt):
    inputs = texts(150)
    rows = [{"text": text, "other": i} for i, text in enumerate(inputs)]
    path = {"jsonl": lambda: write_jsonl(tmp_path / "in.jsonl", rows),
            "csv": lambda: write_csv(tmp_path / "in.csv", rows, ["other", "text"]),
            "parquet": lambda: write_parquet(tmp_path / "in.parquet", rows)}[fmt]()
    summary = batch.run("sentiment-analysis", folders["text"], path, str(tmp_path / "out.jsonl"), batch_size=16,
                        chunk_size=64, options={"top_k": 2}, quiet=True)
    assert summary["rows"] == summary["ok"] == 150 and summary["errors"] == 0 and summary["errors_file"] is None
    pipe = leanformers.pipeline("sentiment-analysis", model=folders["text"])
    got = results_by_id(tmp_path / "out.jsonl")
    assert list(got) == list(range(150))
    assert_same(pipe(inputs, top_k=2), [got[i] for i in range(150)])
    assert not (tmp_path / "out.jsonl.errors.jsonl").exists()


def test_real_minilm_embeddings(tmp_path):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market crashed today."]
    path = write_jsonl(tmp_path / "in.jsonl", [{"sentence": s} for s in sentences * 3])
    batch.run("feature-extraction", str(MINILM), path, str(tmp_path / "out.jsonl"), column="sentence",
              batch_size=4, options={"pooling": "auto"}, quiet=True)
    got = results_by_id(tmp_path / "out.jsonl")
    pipe = leanformers.pipeline("feature-extraction", model=str(MINILM))
    assert_same([r.tolist() if hasattr(r, "tolist") else r for r in pipe(sentences * 3, pooling="auto")],
                [got[i] for i in range(9)])
    assert len(got[0]) == 384


# ---------------------------------------------------------------- two-input tasks read named columns
def test_question_answering_and_text_pairs_read_named_columns(folders, tmp_path):
    rows = [{"q": q, "ctx": QA_CONTEXT} for q in QUESTIONS * 4]
    path = write_csv(tmp_path / "qa.csv", rows, ["q", "ctx"])
    batch.run("question-answering", folders["qa"], path, str(tmp_path / "qa.jsonl"), columns="q,ctx", quiet=True)
    qa = leanformers.pipeline("question-answering", model=folders["qa"])
    expected = qa([{"question": r["q"], "context": r["ctx"]} for r in rows])
    got = results_by_id(tmp_path / "qa.jsonl")
    assert_same(expected, [got[i] for i in range(len(rows))])
    # one question column and a fixed --context, as `leanformers question-answering --context`
    path = write_jsonl(tmp_path / "questions.jsonl", [{"question": q} for q in QUESTIONS])
    batch.run("question-answering", folders["qa"], path, str(tmp_path / "fixed.jsonl"),
              options={"context": QA_CONTEXT}, quiet=True)
    fixed = results_by_id(tmp_path / "fixed.jsonl")
    assert_same(expected[:3], [fixed[i] for i in range(3)])
    # text pairs: the two columns are the text and its pair
    pairs = [{"premise": a, "hypothesis": b} for a, b in zip(texts(20), texts(21)[1:])]
    path = write_parquet(tmp_path / "pairs.parquet", pairs)
    batch.run("text-classification", folders["text"], path, str(tmp_path / "pairs.jsonl"),
              columns=["premise", "hypothesis"], batch_size=4, quiet=True)
    pipe = leanformers.pipeline("text-classification", model=folders["text"])
    got = results_by_id(tmp_path / "pairs.jsonl")
    assert_same(pipe([{"text": p["premise"], "text_pair": p["hypothesis"]} for p in pairs]),
                [got[i] for i in range(20)])
    with pytest.raises(ValueError, match="question-answering task reads 2 column"):
        batch.run("question-answering", folders["qa"], path, str(tmp_path / "x.jsonl"), column="premise")


# ---------------------------------------------------------------- bad rows
def bad_rows_file(tmp_path) -> tuple[str, list, dict]:
    """A JSON lines file with good rows and one of each kind of bad row; (path, good texts by id, bad reasons)."""
    lines, good, bad = [], {}, {}
    for i, text in enumerate(texts(60)):
        lines.append(json.dumps({"text": text}))
        good[i] = text
    for at, line, reason in [(3, "{not json", "unreadable JSON"), (10, json.dumps({"body": "x"}), "missing column"),
                             (17, json.dumps({"text": "   "}), "is empty"), (25, json.dumps({"text": 42}), "int"),
                             (31, json.dumps(["a", "list"]), "must be an object"),
                             (40, json.dumps({"text": None}), "missing column")]:
        lines[at] = line
        good.pop(at)
        bad[at] = reason
    lines.insert(50, "")  # a blank line is not a row
    return write_jsonl(tmp_path / "bad.jsonl", lines), good, bad


def test_bad_rows_go_to_the_errors_file(folders, tmp_path):
    path, good, bad = bad_rows_file(tmp_path)
    out = tmp_path / "out.jsonl"
    summary = batch.run("text-classification", folders["text"], path, str(out), batch_size=8, chunk_size=16,
                        quiet=True)
    assert (summary["rows"], summary["ok"], summary["errors"]) == (60, 54, 6)
    errors = read_jsonl(str(out) + ".errors.jsonl")
    assert [e["id"] for e in errors] == sorted(bad)
    for error in errors:
        assert bad[error["id"]] in error["error"], error
    got = results_by_id(out)
    assert list(got) == sorted(good)
    pipe = leanformers.pipeline("text-classification", model=folders["text"])
    assert_same(pipe([good[i] for i in sorted(good)]), [got[i] for i in sorted(good)])


def test_a_row_the_pipeline_rejects_is_isolated(folders, tmp_path):
    """A row that passes the column checks but fails inside the pipeline (no [MASK] for fill-mask): only that row
    becomes an error; the others of its chunk are still answered."""
    mlm = make_checkpoint(tmp_path / "mlm", "ForMaskedLM")
    rows = [{"text": "Paris is the [MASK] of France."}, {"text": "no mask here"}, {"text": "I [MASK] it."}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = batch.run("fill-mask", mlm, path, str(tmp_path / "out.jsonl"), quiet=True)
    assert (summary["ok"], summary["errors"]) == (2, 1)
    (error,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert error["id"] == 1 and "No mask_token" in error["error"]
    pipe = leanformers.pipeline("fill-mask", model=mlm)
    got = results_by_id(tmp_path / "out.jsonl")
    assert_same([pipe(rows[0]["text"]), pipe(rows[2]["text"])], [got[0], got[2]])


def test_caller_mistakes_are_clear_errors(folders, tmp_path):
    path = write_csv(tmp_path / "in.csv", [{"body": "x"}], ["body"])
    with pytest.raises(ValueError, match=r"in\.csv: no column 'text' in the CSV header \['body'\]"):
        batch.run("text-classification", folders["text"], path, str(tmp_path / "out.jsonl"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        batch.run("text-classification", folders["text"], tmp_path / "nope.jsonl", str(tmp_path / "out.jsonl"))
    with pytest.raises(ValueError, match="cannot tell the format"):
        batch.run("text-classification", folders["text"], write_jsonl(tmp_path / "in.txt", []), str(tmp_path / "o"))
    with pytest.raises(TypeError, match="unexpected argument.*colour"):
        batch.run("text-classification", folders["text"], path, str(tmp_path / "out.jsonl"), column="body",
                  options={"colour": 1})
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    with pytest.raises(ValueError, match=r"array\.json holds a JSON array; batch reads JSON lines"):
        batch.run("text-classification", folders["text"], array, str(tmp_path / "out.jsonl"))
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        batch.run("text-classification", folders["text"], path, str(tmp_path / "out.jsonl"), engine="spark")


# ---------------------------------------------------------------- resuming
def test_resume_after_an_interruption_and_a_torn_chunk(folders, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts(500)])
    reference = tmp_path / "reference.jsonl"
    batch.run("text-classification", folders["text"], path, str(reference), chunk_size=50, quiet=True)
    out = tmp_path / "out.jsonl"
    calls = {"n": 0}
    real_call = batch.Predictor.__call__

    def stop_after_four_chunks(self, rows):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_call(self, rows)

    monkeypatch.setattr(batch.Predictor, "__call__", stop_after_four_chunks)
    with pytest.raises(KeyboardInterrupt):
        batch.run("text-classification", folders["text"], path, str(out), chunk_size=50, quiet=True)
    monkeypatch.undo()
    state = json.loads((tmp_path / "out.jsonl.progress.json").read_text())
    assert state["rows"] == 200 and not state["done"]
    with open(out, "ab") as file:  # as if killed while writing the fifth chunk: a torn, unrecorded line
        file.write(b'{"id": 200, "result": {"label": "neg')
    summary = batch.run("text-classification", folders["text"], path, str(out), chunk_size=50, quiet=True)
    assert summary["resumed_at_row"] == 200 and summary["rows_this_run"] == 300 and summary["rows"] == 500
    assert read_jsonl(out) == read_jsonl(reference)  # same chunks, so the same bytes' worth of values
    again = batch.run("text-classification", folders["text"], path, str(out), chunk_size=50, quiet=True)
    assert again["rows_this_run"] == 0 and again["rows"] == 500  # a finished run is not redone


def test_settings_must_match_to_resume(folders, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts(10)])
    out = str(tmp_path / "out.jsonl")
    batch.run("text-classification", folders["text"], path, out, quiet=True)
    with pytest.raises(ValueError, match=r"other settings \(options differ"):
        batch.run("text-classification", folders["text"], path, out, options={"top_k": 2}, quiet=True)
    summary = batch.run("text-classification", folders["text"], path, out, options={"top_k": 2}, overwrite=True,
                        quiet=True)
    assert summary["rows"] == 10 and len(read_jsonl(out)[0]["result"]) == 2
    plain = tmp_path / "plain.jsonl"
    plain.write_text("something else\n")
    with pytest.raises(ValueError, match="not a resumable batch output"):
        batch.run("text-classification", folders["text"], path, str(plain), quiet=True)


def test_kill_9_mid_run_then_rerun_gives_every_row_once(folders, tmp_path):
    """A real `leanformers batch` process killed with SIGKILL while it runs, started again with the same
    arguments: the output then holds exactly one line per input row (good rows) and the errors file the bad ones,
    all in order, with the values of an uninterrupted run."""
    rows = [{"text": t} for t in texts(3000)]
    rows[123] = {"text": ""}
    rows[2500] = {"body": "no text"}
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    argv = ["batch", "text-classification", "--model", folders["text"], "--input", path, "--batch-size", "16",
            "--chunk-size", "40", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "leanformers.cli", *argv, "--output", str(killed)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state_path = Path(str(killed) + ".progress.json")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if state_path.exists() and json.loads(state_path.read_text() or "{}").get("rows", 0) >= 400:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        time.sleep(0.07)  # somewhere inside a later chunk
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    state = json.loads(state_path.read_text())
    assert 400 <= state["rows"] < 3000 and not state["done"]
    assert cli.main([*argv, "--output", str(killed)]) == 0
    whole = tmp_path / "whole.jsonl"
    assert cli.main([*argv, "--output", str(whole)]) == 0
    ids = [row["id"] for row in read_jsonl(killed)]
    error_ids = [row["id"] for row in read_jsonl(str(killed) + ".errors.jsonl")]
    assert error_ids == [123, 2500]
    assert ids == [i for i in range(3000) if i not in (123, 2500)]
    assert_same(read_jsonl(whole), read_jsonl(killed))


# ---------------------------------------------------------------- command line and Parquet output
def test_command_line_and_parquet_output(folders, tmp_path, capsys):
    import pyarrow.parquet

    inputs = texts(30)
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in inputs])
    out = tmp_path / "out.parquet"
    code = cli.main(["batch", "sentiment-analysis", "--model", folders["text"], "--input", path, "--output",
                     str(out), "--top-k", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    summary = json.loads(captured.out)
    assert summary["rows"] == summary["ok"] == 30 and summary["output"] == str(out)
    table = pyarrow.parquet.read_table(out).to_pylist()
    assert [row["id"] for row in table] == list(range(30))
    pipe = leanformers.pipeline("sentiment-analysis", model=folders["text"])
    assert_same(pipe(inputs, top_k=2), [row["result"] for row in table])
    assert not Path(str(out) + ".part.jsonl").exists()
    code = cli.main(["batch", "sentiment-analysis", "--model", folders["text"], "--input", path, "--output",
                     str(tmp_path / "o.jsonl"), "--column", "body"])
    assert code == 0  # JSON lines: a column missing from a row is that row's error, not a failed run
    assert json.loads(capsys.readouterr().out)["errors"] == 30
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert len(errors) == 30 and errors[0] == {"id": 0, "error": "missing column 'body' (the row has ['text'])"}


def test_progress_line_shows_rows_per_second_and_eta(capsys):
    from leanformers.batch.output import Progress

    progress = Progress(True, total=1000, start=200, label="text-classification")
    time.sleep(0.05)
    progress.update(600, final=True)
    line = capsys.readouterr().err
    assert line.startswith("\rtext-classification: 600/1,000 rows (60.0%), ") and "rows/s, ETA 00:0" in line
    Progress(False, total=1000, start=0, label="x").update(10, final=True)  # --quiet or not a terminal: nothing
    assert capsys.readouterr().err == ""
