"""Fine-tune the real all-MiniLM-L6-v2 into a spam filter on the SpamAssassin public corpus (transfer learning).

    .venv/bin/python examples/spam_finetune.py            # ~800 mails to train, 400 held out; a few minutes on 2 cores

The corpus is fetched by scripts/fetch_models.sh into .models/spam/<group>/*.json (one raw RFC 822 mail each):
easy-ham-1, easy-ham-2 and hard-ham-1 are ham, spam-1 and spam-2 are spam. A fixed, balanced split (seeded) keeps the
result comparable from run to run; the held-out mails are never trained on (held-out copies of training mails are
dropped). The model gets a fresh 2-label head.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import html
import json
import random
import re
from pathlib import Path

import numpy as np

from leanformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)

ROOT = Path(__file__).resolve().parents[1]
HAM, SPAM = ("easy-ham-1", "easy-ham-2", "hard-ham-1"), ("spam-1", "spam-2")
LABELS = {0: "ham", 1: "spam"}


def mail_text(raw: str, max_chars: int = 2000) -> str:
    """'Subject: ...' and the first text part of the body (HTML tags dropped), from a raw RFC 822 mail."""
    message = email.message_from_bytes(raw.encode("latin-1", errors="replace"), policy=email.policy.compat32)
    body = ""
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        body = payload.decode(part.get_content_charset() or "latin-1", errors="replace") \
            if _known_charset(part.get_content_charset()) else payload.decode("latin-1", errors="replace")
        if part.get_content_subtype() == "html":
            body = html.unescape(re.sub(r"<[^>]+>", " ", body))
        break
    subject = str(message.get("Subject", "") or "")
    return f"Subject: {subject}\n\n{' '.join(body.split())}"[:max_chars]


def _known_charset(charset) -> bool:
    if not charset:
        return False
    try:
        "".encode(charset)
    except LookupError:
        return False
    return True


def load_split(folder: Path, train_per_class: int = 400, test_per_class: int = 200, seed: int = 0):
    """A fixed balanced split: per class, `train_per_class` mails to train on and `test_per_class` held out (less the
    held-out mails whose text also appears among the training mails)."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: run scripts/fetch_models.sh (it fetches the SpamAssassin corpus)")
    rng = random.Random(seed)
    train, test = [], []
    for label, groups in ((0, HAM), (1, SPAM)):
        files = sorted(f for group in groups for f in (folder / group).glob("*.json"))
        rng.shuffle(files)
        chosen = files[: train_per_class + test_per_class]
        rows = [{"text": mail_text(json.loads(f.read_text(encoding="utf-8"))["text"]), "label": label}
                for f in chosen]
        train += rows[:train_per_class]
        test += rows[train_per_class:]
    seen = {r["text"] for r in train}  # the corpus repeats some mails: a copy of a training mail is not held out
    test = [r for r in test if r["text"] not in seen]
    rng.shuffle(train)
    return train, test


def accuracy(eval_pred) -> dict:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def fine_tune(train, test, output_dir: str, model_folder: str, epochs: float = 2.0, max_length: int = 128,
              batch_size: int = 16, learning_rate: float = 1e-4, seed: int = 42) -> dict:
    """Tokenize, fine-tune with a fresh 2-label head, evaluate on the held-out mails, save; returns the metrics."""
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_folder, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})

    def tokenize(rows):
        encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
        return [{**{k: v[i] for k, v in encoded.items()}, "label": r["label"]} for i, r in enumerate(rows)]

    args = TrainingArguments(output_dir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=64, learning_rate=learning_rate, warmup_ratio=0.1,
                             weight_decay=0.01, logging_steps=10, save_strategy="no", seed=seed,
                             group_by_length=True, report_to="none")
    trainer = Trainer(model=model, args=args, train_dataset=tokenize(train), eval_dataset=tokenize(test),
                      processing_class=tokenizer, compute_metrics=accuracy)
    result = trainer.train()
    metrics = {"train_loss": result.training_loss, "train_runtime": result.metrics["train_runtime"],
               **trainer.evaluate()}
    trainer.save_model(output_dir)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / ".models" / "spam"))
    parser.add_argument("--model", default=str(ROOT / ".models" / "minilm"))
    parser.add_argument("--output-dir", default=str(ROOT / "out" / "spam-minilm"))
    parser.add_argument("--train-per-class", type=int, default=400)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    train, test = load_split(Path(args.corpus), args.train_per_class, args.test_per_class)
    print(f"{len(train)} mails to train on, {len(test)} held out (half spam)")
    metrics = fine_tune(train, test, args.output_dir, args.model, epochs=args.epochs)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    print(f"held-out accuracy {metrics['eval_accuracy']:.1%}; the model is in {args.output_dir}: "
          f"pipeline('text-classification', model={args.output_dir!r})")


if __name__ == "__main__":
    main()
