"""Trainer parity with transformers' Trainer (4.57.6 + accelerate): same tiny model, data and seed (dropout 0) give
the same logged losses, gradient norms, learning rates, evaluation metrics and final weights (1e-4).

Both start from one saved transformers checkpoint (so model init is not a source of difference); both Trainers call
set_seed(args.seed) and draw each epoch's order from a generator seeded with seed + epoch (accelerate's seedable
sampler; ours), so the batches are the same.
"""
import random

import numpy as np
import pytest
import torch

import leanformers as lf
from leanformers.loading import convert_checkpoint
from leanformers.training import Trainer, TrainingArguments

pytestmark = pytest.mark.usefixtures("one_thread")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
COMMON = {"report_to": "none", "disable_tqdm": True, "save_strategy": "no", "logging_steps": 1, "seed": 7}


def token_rows(n: int, length: int = 12, vocab: int = 100, num_labels: int = 3, seed: int = 0, causal=False):
    """Pre-padded examples (right padding with id 0, mask 0): a sequence label, or per-token labels for causal LMs
    (-100 on padding)."""
    g = random.Random(seed)
    rows = []
    for _ in range(n):
        real = g.randint(3, length)
        ids = [g.randint(5, vocab - 1) for _ in range(real)] + [0] * (length - real)
        row = {"input_ids": ids, "attention_mask": [1] * real + [0] * (length - real)}
        row["labels" if causal else "label"] = ids[:real] + [-100] * (length - real) if causal \
            else g.randint(0, num_labels - 1)
        rows.append(row)
    return rows


def tiny_bert(folder, num_labels=3, dropout=0.0, seed=0) -> str:
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, hidden_dropout_prob=dropout,
                                     attention_probs_dropout_prob=dropout, num_labels=num_labels,
                                     max_position_embeddings=64)
    torch.manual_seed(seed)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


def tiny_gpt2(folder, seed=0) -> str:
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return str(folder)


def ours_from(folder, auto):
    model = auto.from_pretrained(folder)
    if not any(p.requires_grad for p in model.parameters()):
        model.requires_grad_(True)  # until from_pretrained returns trainable models (issue 9, item 0)
    return model


def assert_same_history(theirs, ours, keys=("loss", "grad_norm", "learning_rate", "epoch", "step", "eval_loss",
                                             "eval_accuracy")):
    assert len(theirs) == len(ours), (theirs, ours)
    for a, b in zip(theirs, ours):
        assert set(a) == set(b), (sorted(a), sorted(b))
        for key in keys:
            if key in a:
                assert abs(a[key] - b[key]) <= TOL * max(1.0, abs(a[key])) + 1e-4 * (key == "loss"), (key, a, b)


def assert_same_weights(hf_model, ours):
    theirs, _ = convert_checkpoint(type(ours).spec, hf_model.state_dict(), ours.config, ours.task)
    mine = ours.state_dict()
    compared = [k for k in theirs if k in mine]
    assert len(compared) >= len(mine) - 1
    worst = max((theirs[k].float() - mine[k].float()).abs().max().item() for k in compared)
    assert worst <= TOL, worst


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def test_classification_matches_transformers_trainer(tmp_path):
    """Gradient accumulation with a short last window, weight decay groups, warmup + linear decay, clipping,
    evaluation every 3 steps with compute_metrics: the whole log history and the final weights agree."""
    folder = tiny_bert(tmp_path / "init")
    train, validation = token_rows(42, seed=0), token_rows(10, seed=1)
    settings = dict(per_device_train_batch_size=4, per_device_eval_batch_size=3, num_train_epochs=2,
                    learning_rate=1e-3, weight_decay=0.01, warmup_steps=2, gradient_accumulation_steps=2,
                    max_grad_norm=0.3, eval_strategy="steps", eval_steps=3, **COMMON)
    hf_model = transformers.BertForSequenceClassification.from_pretrained(folder)
    theirs = transformers.Trainer(model=hf_model, args=transformers.TrainingArguments(str(tmp_path / "hf"), **settings),
                                  train_dataset=train, eval_dataset=validation, compute_metrics=accuracy)
    theirs.train()
    model = ours_from(folder, lf.AutoModelForSequenceClassification)
    ours = Trainer(model=model, args=TrainingArguments(str(tmp_path / "ours"), **settings), train_dataset=train,
                   eval_dataset=validation, compute_metrics=accuracy)
    result = ours.train()
    assert_same_history(theirs.state.log_history[:-1], ours.state.log_history[:-1])
    assert result.global_step == theirs.state.global_step == 12
    assert abs(result.training_loss - theirs.state.log_history[-1]["train_loss"]) <= TOL
    assert_same_weights(hf_model, model)
    assert abs(ours.evaluate()["eval_loss"] - theirs.evaluate()["eval_loss"]) <= TOL


def test_causal_lm_matches_transformers_trainer(tmp_path):
    """Causal LMs take transformers' loss-kwargs path: token losses summed over an accumulation window and divided by
    the window's label count (not the mean of batch means) — padding labels -100, cosine schedule, max_steps."""
    folder = tiny_gpt2(tmp_path / "init")
    train = token_rows(30, causal=True, seed=3)
    settings = dict(per_device_train_batch_size=4, max_steps=7, learning_rate=2e-3, gradient_accumulation_steps=3,
                    lr_scheduler_type="cosine", warmup_ratio=0.2, **COMMON)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(folder)
    theirs = transformers.Trainer(model=hf_model, args=transformers.TrainingArguments(str(tmp_path / "hf"), **settings),
                                  train_dataset=train)
    theirs.train()
    model = ours_from(folder, lf.AutoModelForCausalLM)
    ours = Trainer(model=model, args=TrainingArguments(str(tmp_path / "ours"), **settings), train_dataset=train)
    ours.train()
    assert_same_history(theirs.state.log_history[:-1], ours.state.log_history[:-1])
    assert_same_weights(hf_model, model)


@pytest.mark.parametrize("kind", ["classification", "causal_lm"])
def test_label_smoothing_matches_transformers_trainer(kind, tmp_path):
    """label_smoothing_factor: transformers' LabelSmoother (shifted for causal LMs), in training and evaluation."""
    causal = kind == "causal_lm"
    folder = tiny_gpt2(tmp_path / "init") if causal else tiny_bert(tmp_path / "init")
    train, validation = token_rows(16, causal=causal, seed=4), token_rows(6, causal=causal, seed=5)
    settings = dict(per_device_train_batch_size=4, max_steps=4, learning_rate=2e-3, label_smoothing_factor=0.1,
                    **COMMON)
    hf_class = transformers.GPT2LMHeadModel if causal else transformers.BertForSequenceClassification
    hf_model = hf_class.from_pretrained(folder)
    theirs = transformers.Trainer(model=hf_model, args=transformers.TrainingArguments(str(tmp_path / "hf"), **settings),
                                  train_dataset=train, eval_dataset=validation)
    theirs.train()
    model = ours_from(folder, lf.AutoModelForCausalLM if causal else lf.AutoModelForSequenceClassification)
    ours = Trainer(model=model, args=TrainingArguments(str(tmp_path / "ours"), **settings), train_dataset=train,
                   eval_dataset=validation)
    ours.train()
    assert_same_history(theirs.state.log_history[:-1], ours.state.log_history[:-1])
    assert_same_weights(hf_model, model)
    assert abs(ours.evaluate()["eval_loss"] - theirs.evaluate()["eval_loss"]) <= TOL


def test_predict_and_datasets_dataset(tmp_path):
    """predict() returns transformers' logits and labels; a datasets.Dataset with extra columns (raw text) trains
    like the list (unused columns dropped)."""
    datasets = pytest.importorskip("datasets")
    folder = tiny_bert(tmp_path / "init")
    rows = token_rows(16, seed=5)
    table = datasets.Dataset.from_list([{**row, "text": f"example {i}"} for i, row in enumerate(rows)])
    settings = dict(per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3, **COMMON)
    hf_model = transformers.BertForSequenceClassification.from_pretrained(folder)
    theirs = transformers.Trainer(model=hf_model, args=transformers.TrainingArguments(str(tmp_path / "hf"), **settings),
                                  train_dataset=table)
    theirs.train()
    model = ours_from(folder, lf.AutoModelForSequenceClassification)
    ours = Trainer(model=model, args=TrainingArguments(str(tmp_path / "ours"), **settings), train_dataset=table)
    ours.train()
    assert_same_weights(hf_model, model)
    expected, got = theirs.predict(rows), ours.predict(table)
    assert np.abs(expected.predictions - got.predictions).max() <= TOL
    assert np.array_equal(expected.label_ids, got.label_ids)
    assert abs(expected.metrics["test_loss"] - got.metrics["test_loss"]) <= TOL


def test_schedulers_match_transformers():
    from transformers import optimization as theirs

    from leanformers.training import schedulers as ours

    for name in ("linear", "cosine", "constant", "constant_with_warmup"):
        rates = []
        for module in (theirs, ours):
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
            schedule = module.get_scheduler(name, optimizer, num_warmup_steps=3, num_training_steps=11)
            seen = []
            for _ in range(12):
                seen.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                schedule.step()
            rates.append(seen)
        assert rates[0] == pytest.approx(rates[1], abs=1e-12), name


def test_set_seed_matches_transformers():
    from transformers import set_seed as their_seed

    draws = []
    for seed_fn in (their_seed, lf.set_seed):
        seed_fn(123)
        draws.append((random.random(), float(np.random.rand()), torch.rand(3).tolist()))
    assert draws[0] == draws[1]


def test_arguments_defaults_match_transformers():
    theirs, ours = transformers.TrainingArguments("x"), TrainingArguments("x")
    for name in ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
                 "num_train_epochs", "max_steps", "warmup_ratio", "warmup_steps", "per_device_train_batch_size",
                 "per_device_eval_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps", "seed",
                 "save_total_limit", "load_best_model_at_end", "group_by_length", "dataloader_num_workers",
                 "label_smoothing_factor"):
        assert getattr(theirs, name) == getattr(ours, name), name
    for name in ("eval_strategy", "save_strategy", "logging_strategy", "lr_scheduler_type", "optim"):
        assert getattr(theirs, name).value == getattr(ours, name), name
