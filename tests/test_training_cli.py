"""`leanformers train TASK`: CSV / JSON lines in, metrics JSON out, and a folder that `pipeline(TASK, model=folder)`
and transformers both load (equal logits). Tiny random checkpoints saved by transformers, the real MiniLM tokenizer."""
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

import leanformers as lf
from leanformers.cli import main

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")
TOKENIZER = Path(__file__).resolve().parents[1] / ".models" / "minilm"
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "past", "quiet", "old", "houses", "near",
         "green", "fields"]


@pytest.fixture(scope="module")
def tokenizer_files():
    if not (TOKENIZER / "tokenizer.json").exists():
        pytest.skip("the real MiniLM tokenizer is not in .models (scripts/fetch_models.sh)")
    return [TOKENIZER / name for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                          "vocab.txt")]


def checkpoint(folder, hf_class, config, tokenizer_files) -> str:
    torch.manual_seed(0)
    hf_class(config).save_pretrained(folder)
    for path in tokenizer_files:
        shutil.copy(path, folder)
    return str(folder)


def bert(**extra):
    return transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=37, max_position_embeddings=64, **extra)


def sentence(i: int, n: int = 5) -> str:
    return " ".join(WORDS[(i * 5 + j * 3) % len(WORDS)] for j in range(n + i % 4))


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, rows):
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def train(capsys, *argv):
    code = main(["train", *map(str, argv), "--epochs", "1", "--batch-size", "4", "--learning-rate", "1e-3",
                 "--logging-steps", "1", "--max-length", "32"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def assert_transformers_agrees(folder, hf_auto, ours_auto, **inputs):
    theirs = hf_auto.from_pretrained(folder)
    ours = ours_auto.from_pretrained(folder)
    with torch.no_grad():
        expected, got = theirs(**inputs).logits, ours(**inputs).logits
    assert (expected - got).abs().max().item() <= 1e-4


def test_text_classification_pairs_from_csv(tmp_path, capsys, tokenizer_files):
    model = checkpoint(tmp_path / "init", transformers.BertForSequenceClassification, bert(), tokenizer_files)
    rows = [{"premise": sentence(i), "hypothesis": sentence(i + 3), "label": ["yes", "no", "maybe"][i % 3]}
            for i in range(16)]
    metrics = train(capsys, "text-classification", "--model", model, "--train", write_csv(tmp_path / "t.csv", rows),
                    "--validation", write_csv(tmp_path / "v.csv", rows[:6]), "--text-column", "premise",
                    "--text-pair-column", "hypothesis", "--output-dir", tmp_path / "out")
    assert {"train_loss", "eval_loss", "eval_accuracy", "train_runtime"} <= set(metrics)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "maybe", "1": "no", "2": "yes"}
    pipe = lf.pipeline("text-classification", model=str(tmp_path / "out"))
    result = pipe({"text": sentence(1), "text_pair": sentence(4)})
    assert result["label"] in ("maybe", "no", "yes")
    ids = torch.tensor([lf.AutoTokenizer.from_pretrained(tmp_path / "out")(sentence(2))["input_ids"]])
    assert_transformers_agrees(tmp_path / "out", transformers.AutoModelForSequenceClassification,
                               lf.AutoModelForSequenceClassification, input_ids=ids)


def test_token_classification_from_jsonl(tmp_path, capsys, tokenizer_files):
    model = checkpoint(tmp_path / "init", transformers.BertForTokenClassification, bert(), tokenizer_files)
    rows = [{"tokens": sentence(i).split(), "tags": ["B-X" if w == "cat" else "O" for w in sentence(i).split()]}
            for i in range(12)]
    metrics = train(capsys, "token-classification", "--model", model, "--train",
                    write_jsonl(tmp_path / "t.jsonl", rows),
                    "--validation", write_jsonl(tmp_path / "v.jsonl", rows[:4]),
                    "--text-column", "tokens",
                    "--label-column", "tags", "--output-dir", tmp_path / "out")
    assert "eval_accuracy" in metrics
    entities = lf.pipeline("token-classification", model=str(tmp_path / "out"))("the cat sat")
    assert isinstance(entities, list)


@pytest.mark.parametrize("task", ["masked-lm", "causal-lm"])
def test_language_modeling(tmp_path, capsys, tokenizer_files, task):
    if task == "masked-lm":
        model = checkpoint(tmp_path / "init", transformers.BertForMaskedLM, bert(), tokenizer_files)
    else:
        config = transformers.GPT2Config(vocab_size=30522, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                         pad_token_id=0, eos_token_id=102, bos_token_id=101)
        model = checkpoint(tmp_path / "init", transformers.GPT2LMHeadModel, config, tokenizer_files)
    rows = [{"text": sentence(i)} for i in range(12)]
    metrics = train(capsys, task, "--model", model, "--train", write_jsonl(tmp_path / "t.jsonl", rows),
                    "--validation", write_jsonl(tmp_path / "v.jsonl", rows[:4]), "--output-dir", tmp_path / "out")
    assert metrics["eval_loss"] > 0 and metrics["pipeline_task"] in ("fill-mask", "text-generation")
    if task == "masked-lm":
        assert len(lf.pipeline("fill-mask", model=str(tmp_path / "out"))("the cat [MASK] on a mat")) == 5
    else:
        out = lf.pipeline("text-generation", model=str(tmp_path / "out"))("the cat", max_new_tokens=3, do_sample=False)
        assert out[0]["generated_text"].startswith("the cat")


def test_seq2seq(tmp_path, capsys, tokenizer_files):
    config = transformers.BartConfig(vocab_size=30522, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, bos_token_id=101,
                                     eos_token_id=102, decoder_start_token_id=102, forced_eos_token_id=102)
    model = checkpoint(tmp_path / "init", transformers.BartForConditionalGeneration, config, tokenizer_files)
    rows = [{"document": sentence(i, 8), "summary": sentence(i, 2)} for i in range(12)]
    metrics = train(capsys, "summarization", "--model", model, "--train", write_jsonl(tmp_path / "t.jsonl", rows),
                    "--text-column", "document", "--target-column", "summary", "--output-dir", tmp_path / "out")
    assert metrics["train_loss"] > 0
    summary = lf.pipeline("summarization", model=str(tmp_path / "out"))(sentence(3, 8), max_new_tokens=4)
    assert isinstance(summary[0]["summary_text"], str)


def test_clear_errors(tmp_path, capsys, tokenizer_files):
    model = checkpoint(tmp_path / "init", transformers.BertForSequenceClassification, bert(), tokenizer_files)
    rows = write_csv(tmp_path / "t.csv", [{"sentence": "a b", "label": "x"}])
    assert main(["train", "text-classification", "--model", model, "--train", rows, "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "no column 'text'; the columns are ['label', 'sentence']" in capsys.readouterr().err
    numbers = write_jsonl(tmp_path / "n.jsonl", [{"text": "fine", "label": 0}, {"text": 12, "label": 1}])
    assert main(["train", "text-classification", "--model", model, "--train", numbers, "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "row 2: column 'text' must be str, got int 12" in capsys.readouterr().err
    empty = write_jsonl(tmp_path / "e.jsonl", [])
    assert main(["train", "text-classification", "--model", model, "--train", empty, "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "no rows (an empty training set)" in capsys.readouterr().err
