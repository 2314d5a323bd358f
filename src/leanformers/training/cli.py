"""`leanformers train TASK --model M --train FILE [--validation FILE] --output-dir OUT ...`: fine-tune from CSV or JSON
lines, print the metrics as JSON, leave a folder that `pipeline(TASK, model=OUT)` (and transformers) loads.

    leanformers train text-classification --model .models/minilm --train train.csv --validation dev.csv \\
        --text-column text --label-column label --output-dir out/classifier --epochs 3
    leanformers train token-classification --model M --train ner.jsonl --text-column tokens --label-column tags ...
    leanformers train summarization --model M --train news.jsonl --text-column document --target-column summary ...

Tasks: text-classification (single texts or pairs with --text-pair-column), token-classification (a list of words
and a list of word labels per row), masked-lm and causal-lm (domain adaptation on plain text), summarization /
translation / text2text-generation (seq2seq: --target-column).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys

TASKS = {  # task -> (family, the pipeline task its output folder serves)
    "text-classification": ("classification", "text-classification"),
    "sentiment-analysis": ("classification", "text-classification"),
    "token-classification": ("tokens", "token-classification"),
    "ner": ("tokens", "token-classification"),
    "masked-lm": ("masked", "fill-mask"),
    "fill-mask": ("masked", "fill-mask"),
    "causal-lm": ("causal", "text-generation"),
    "text-generation": ("causal", "text-generation"),
    "summarization": ("seq2seq", "summarization"),
    "translation": ("seq2seq", "translation"),
    "text2text-generation": ("seq2seq", "text2text-generation"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanformers train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--model", required=True, help="repo id or folder to start from")
    parser.add_argument("--tokenizer", help="repo id or folder of the tokenizer (default: the model's)")
    parser.add_argument("--train", required=True, help="training data: .csv or .jsonl / .json (JSON lines)")
    parser.add_argument("--validation", help="evaluation data, same format")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--text-pair-column", help="text-classification of pairs: the second text's column")
    parser.add_argument("--label-column", default="label", help="class / per-word labels column")
    parser.add_argument("--target-column", default="target", help="seq2seq: the output text's column")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--lr-scheduler-type", default="linear")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example (longer ones are cut)")
    parser.add_argument("--max-target-length", type=int, default=128)
    parser.add_argument("--logging-steps", type=float, default=50)
    parser.add_argument("--save-strategy", default="no", help="no, steps or epoch (checkpoints in --output-dir)")
    parser.add_argument("--save-steps", type=float, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    return parser


def read_rows(path: str) -> list[dict]:
    """CSV (header row) or JSON lines (one object per line); a clear error for anything else."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.endswith((".jsonl", ".json")):
        rows = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
        return rows
    raise ValueError(f"{path}: use a .csv file or JSON lines (.jsonl / .json)")


def column(rows: list[dict], name: str, path: str, kind=str) -> list:
    """The values of one column; a missing column or a wrong type names the file, the row and what is there."""
    if not rows:
        raise ValueError(f"{path}: no rows (an empty training set)")
    if name not in rows[0]:
        raise ValueError(f"{path}: no column {name!r}; the columns are {sorted(rows[0])}")
    values = []
    for number, row in enumerate(rows, 1):
        value = row.get(name)
        if kind is list and isinstance(value, str):  # a CSV cell holding a JSON list, or words split by spaces
            value = json.loads(value) if value.startswith("[") else value.split()
        if not isinstance(value, kind):
            wanted = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            raise TypeError(f"{path}, row {number}: column {name!r} must be {wanted}, got "
                             f"{type(value).__name__} {value!r}")
        values.append(value)
    return values


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = run(args)
    except (ValueError, TypeError, KeyError, OSError) as err:
        print(f"leanformers train: error: {err.args[0] if isinstance(err, KeyError) and err.args else err}",
              file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=None))
    return 0


def run(args) -> dict:
    """Load, tokenize, train, evaluate, save; returns the metrics."""
    from .. import AutoTokenizer
    from . import Trainer, TrainingArguments

    family, pipeline_task = TASKS[args.task]
    train_rows = read_rows(args.train)
    validation_rows = read_rows(args.validation) if args.validation else None
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    prepare = {"classification": _classification, "tokens": _tokens, "masked": _language_model,
               "causal": _language_model, "seq2seq": _seq2seq}[family]
    model, collator, train, validation, metric = prepare(args, family, tokenizer, train_rows, validation_rows)
    training_args = TrainingArguments(
        args.output_dir, num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size or args.batch_size,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
        gradient_accumulation_steps=args.gradient_accumulation_steps, lr_scheduler_type=args.lr_scheduler_type,
        logging_steps=args.logging_steps, save_strategy=args.save_strategy, save_steps=args.save_steps,
        seed=args.seed, bf16=args.bf16, report_to="none")
    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=validation,
                      data_collator=collator, processing_class=tokenizer,
                      compute_metrics=metric if validation is not None else None)
    result = trainer.train(resume_from_checkpoint=True if args.resume else None)
    metrics = {"train_loss": result.training_loss, **{k: v for k, v in result.metrics.items() if k != "train_loss"}}
    if validation is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model(args.output_dir)
    return {**metrics, "output_dir": args.output_dir, "pipeline_task": pipeline_task}


def _labels(values: list, extra: list | None = None) -> tuple[list[str], dict]:
    """Class names in a stable order: integers as they are (0..max), strings sorted."""
    every = list(values) + list(extra or [])
    if all(isinstance(v, int) and not isinstance(v, bool) for v in every):
        names = [str(i) for i in range(max(every) + 1)]
        return names, {str(i): i for i in range(len(names))}
    names = sorted({str(v) for v in every})
    return names, {name: i for i, name in enumerate(names)}


def _accuracy(eval_pred) -> dict:
    import numpy as np

    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    keep = labels != -100
    return {"accuracy": float((predictions[keep] == labels[keep]).mean())}


def _classification(args, family, tokenizer, train_rows, validation_rows):
    from .. import AutoModelForSequenceClassification

    def encode(rows, path, label2id):
        texts = column(rows, args.text_column, path)
        pairs = column(rows, args.text_pair_column, path) if args.text_pair_column else None
        labels = [_label_id(v, label2id, path, args.label_column) for v in column(rows, args.label_column, path,
                                                                                   (str, int))]
        encoded = tokenizer(texts, pairs, truncation=True, max_length=args.max_length)
        return [{**{k: v[i] for k, v in encoded.items()}, "label": labels[i]} for i in range(len(texts))]

    names, label2id = _labels(column(train_rows, args.label_column, args.train, (str, int)),
                              column(validation_rows, args.label_column, args.validation, (str, int))
                              if validation_rows else None)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id,
        ignore_mismatched_sizes=True)
    validation = encode(validation_rows, args.validation, label2id) if validation_rows else None
    return model, None, encode(train_rows, args.train, label2id), validation, _accuracy


def _label_id(value, label2id: dict, path: str, name: str) -> int:
    key = str(value)
    if key not in label2id:
        raise ValueError(f"{path}: label {value!r} in column {name!r} is not among the training labels "
                         f"{sorted(label2id)}")
    return label2id[key]


def _tokens(args, family, tokenizer, train_rows, validation_rows):
    from .. import AutoModelForTokenClassification
    from .collators import DataCollatorForTokenClassification, align_labels_with_tokens

    def encode(rows, path, label2id):
        words = column(rows, args.text_column, path, list)
        tags = column(rows, args.label_column, path, list)
        examples = []
        for number, (row_words, row_tags) in enumerate(zip(words, tags), 1):
            if len(row_words) != len(row_tags) or not all(isinstance(w, str) for w in row_words):
                raise ValueError(f"{path}, row {number}: {args.text_column!r} must be a list of words and "
                                 f"{args.label_column!r} one label per word ({len(row_words)} words, "
                                 f"{len(row_tags)} labels)")
            encoded = tokenizer(row_words, is_split_into_words=True, truncation=True, max_length=args.max_length)
            ids = [_label_id(tag, label2id, path, args.label_column) for tag in row_tags]
            examples.append({**dict(encoded), "labels": align_labels_with_tokens(ids, encoded.word_ids(0))})
        return examples

    flat = [tag for tags in column(train_rows, args.label_column, args.train, list) for tag in tags]
    extra = [tag for tags in column(validation_rows, args.label_column, args.validation, list) for tag in tags] \
        if validation_rows else None
    names, label2id = _labels(flat, extra)
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id,
        ignore_mismatched_sizes=True)
    validation = encode(validation_rows, args.validation, label2id) if validation_rows else None
    return model, DataCollatorForTokenClassification(tokenizer), encode(train_rows, args.train, label2id), \
        validation, _accuracy


def _language_model(args, family, tokenizer, train_rows, validation_rows):
    from .. import AutoModelForCausalLM, AutoModelForMaskedLM
    from .collators import DataCollatorForLanguageModeling

    if family == "causal" and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # batches need padding; the labels ignore it
    auto = AutoModelForMaskedLM if family == "masked" else AutoModelForCausalLM

    def encode(rows, path):
        encoded = tokenizer(column(rows, args.text_column, path), truncation=True, max_length=args.max_length)
        return [{k: v[i] for k, v in encoded.items()} for i in range(len(rows))]

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=family == "masked", seed=args.seed)
    validation = encode(validation_rows, args.validation) if validation_rows else None
    return auto.from_pretrained(args.model), collator, encode(train_rows, args.train), validation, None


def _seq2seq(args, family, tokenizer, train_rows, validation_rows):
    from .. import AutoModelForSeq2SeqLM
    from .collators import DataCollatorForSeq2Seq

    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)

    def encode(rows, path):
        sources, targets = column(rows, args.text_column, path), column(rows, args.target_column, path)
        encoded = tokenizer(sources, truncation=True, max_length=args.max_length)
        labels = tokenizer(text_target=targets, truncation=True, max_length=args.max_target_length)["input_ids"]
        return [{**{k: v[i] for k, v in encoded.items()}, "labels": labels[i]} for i in range(len(rows))]

    validation = encode(validation_rows, args.validation) if validation_rows else None
    return model, DataCollatorForSeq2Seq(tokenizer, model=model), encode(train_rows, args.train), validation, None
