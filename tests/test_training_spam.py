"""The real fine-tune, kept short: all-MiniLM-L6-v2 with a fresh 2-label head on a fixed balanced SpamAssassin split
(examples/spam_finetune.py with 320 mails to train on, 64 tokens, 40 steps). The held-out mails are never trained on; a
majority guess scores 50%. The saved folder serves pipeline('text-classification') with the same answers."""
import importlib.util
from pathlib import Path

import pytest

import leanformers as lf

ROOT = Path(__file__).resolve().parents[1]
CORPUS, MINILM = ROOT / ".models" / "spam", ROOT / ".models" / "minilm"


def example():
    spec = importlib.util.spec_from_file_location("spam_finetune", ROOT / "examples" / "spam_finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mail_parsing():
    raw = ("From: a@b.c\nSubject: =?iso-8859-1?q?Cheap_stuff?=\nContent-Type: multipart/alternative; boundary=X\n\n"
           "--X\nContent-Type: text/html; charset=unknown-8bit\n\n<p>Buy <b>now</b> &amp; save</p>\n--X--\n")
    text = example().mail_text(raw)
    assert text.startswith("Subject: ") and "Buy now & save" in text


def test_spam_finetune_held_out_accuracy(tmp_path):
    if not (CORPUS / "spam-1").is_dir() or not (MINILM / "model.safetensors").exists():
        pytest.skip("the SpamAssassin corpus or MiniLM is not in .models (scripts/fetch_models.sh)")
    spam = example()
    train, test = spam.load_split(CORPUS, train_per_class=160, test_per_class=60, seed=1)
    assert len(train) == 320 and 110 <= len(test) <= 120 and 50 <= sum(r["label"] for r in test) <= 60
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    metrics = spam.fine_tune(train, test, str(tmp_path / "model"), str(MINILM), epochs=2, max_length=64,
                             batch_size=16, learning_rate=1.5e-4)
    assert metrics["eval_accuracy"] >= 0.9, metrics
    classify = lf.pipeline("text-classification", model=str(tmp_path / "model"))
    answers = classify([r["text"] for r in test[:8]], truncation=True, max_length=64)
    assert {a["label"] for a in answers} <= {"ham", "spam"}
    assert sum((a["label"] == "spam") == bool(r["label"]) for a, r in zip(answers, test[:8])) >= 6
