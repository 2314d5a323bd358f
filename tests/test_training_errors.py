"""Bad input gets a clear error naming what is wrong; callbacks, best-model tracking and the progress bar work."""
import io
import os
import stat

import numpy as np
import pytest
import torch

import leanformers as lf
from leanformers.training import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from leanformers.training.callbacks import ProgressCallback

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"report_to": "none", "disable_tqdm": True, "save_strategy": "no", "learning_rate": 1e-3}


def tiny_classifier(num_labels=3):
    config = lf.Config.from_dict({"model_type": "bert", "vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
                                      "num_labels": num_labels, "hidden_dropout_prob": 0.0,
                                      "attention_probs_dropout_prob": 0.0})
    torch.manual_seed(0)
    model = lf.AutoModelForSequenceClassification.from_config(config)
    if not any(p.requires_grad for p in model.parameters()):
        model.requires_grad_(True)
    return model


def rows(n=12, num_labels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (n, 6), generator=g).tolist()
    labels = torch.randint(0, num_labels, (n,), generator=g).tolist()
    return [{"input_ids": i, "attention_mask": [1] * 6, "label": y} for i, y in zip(ids, labels)]


def test_empty_training_set(tmp_path):
    trainer = Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path), **QUIET), train_dataset=[])
    with pytest.raises(ValueError, match="train_dataset is empty"):
        trainer.train()


def test_untokenized_dataset_names_its_columns(tmp_path):
    data = [{"sentence": "hello", "label": 1}] * 4
    trainer = Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path), **QUIET), train_dataset=data)
    with pytest.raises(ValueError, match=r"columns \['sentence', 'label'\].*tokenize"):
        trainer.train()


def test_labels_outside_num_labels(tmp_path):
    data = rows(8, num_labels=5)
    trainer = Trainer(model=tiny_classifier(num_labels=3), args=TrainingArguments(str(tmp_path), **QUIET),
                      train_dataset=data)
    with pytest.raises(ValueError, match=r"outside the model's 3 classes \(0..2\).*num_labels"):
        trainer.train()


def test_unwritable_output_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a regular file instead
        (tmp_path / "file").write_text("x")
        locked = tmp_path / "file" / "out"
    trainer = Trainer(model=tiny_classifier(), args=TrainingArguments(str(locked), **QUIET), train_dataset=rows())
    with pytest.raises(ValueError, match="output_dir .* is not writable"):
        trainer.train()


def test_resume_from_missing_or_incompatible_checkpoint(tmp_path):
    args = TrainingArguments(str(tmp_path / "out"), **{**QUIET, "save_strategy": "steps", "save_steps": 2},
                             max_steps=2, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        Trainer(model=tiny_classifier(), args=args, train_dataset=rows()).train(resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="does not exist"):
        Trainer(model=tiny_classifier(), args=args, train_dataset=rows()).train(
            resume_from_checkpoint=str(tmp_path / "nowhere"))
    Trainer(model=tiny_classifier(), args=args, train_dataset=rows()).train()
    assert (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").exists()
    other = TrainingArguments(str(tmp_path / "out"), **QUIET, max_steps=4, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match="does not fit this model"):  # a 5-label head for a 3-label checkpoint
        Trainer(model=tiny_classifier(num_labels=5), args=other, train_dataset=rows(num_labels=5)).train(
            resume_from_checkpoint=True)
    (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        Trainer(model=tiny_classifier(), args=other, train_dataset=rows()).train(
            resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="eval_strategy='sometimes'"):
        TrainingArguments("x", eval_strategy="sometimes")
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        TrainingArguments("x", lr_scheduler_type="exponential")
    with pytest.raises(ValueError, match="save_strategy == eval_strategy"):
        TrainingArguments("x", load_best_model_at_end=True, eval_strategy="epoch", save_strategy="steps")
    with pytest.raises(TypeError, match="no_such_option"):
        TrainingArguments("x", no_such_option=1)
    with pytest.raises(ValueError, match="report_to"):
        TrainingArguments("x", report_to="wandb")


def test_early_stopping_and_best_model(tmp_path):
    """Accuracy that never improves stops training after `patience` evaluations; the best checkpoint survives the
    rotation and is loaded at the end."""
    seen = []

    def constant_metric(eval_pred):
        seen.append(len(eval_pred.predictions))
        return {"accuracy": 0.5}

    args = TrainingArguments(str(tmp_path), report_to="none", disable_tqdm=True, learning_rate=1e-3,
                             per_device_train_batch_size=2, num_train_epochs=5, eval_strategy="steps", eval_steps=2,
                             save_steps=2, save_total_limit=1, load_best_model_at_end=True,
                             metric_for_best_model="accuracy")
    trainer = Trainer(model=tiny_classifier(), args=args, train_dataset=rows(), eval_dataset=rows(6, seed=1),
                      compute_metrics=constant_metric, callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    assert trainer.state.global_step == 6  # evaluations at 2 (best), 4 and 6 (no improvement twice): stop
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2") and trainer.state.best_metric == 0.5
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("checkpoint")) == ["checkpoint-2", "checkpoint-6"]
    assert seen == [6, 6, 6]
    evaluations = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert [e["step"] for e in evaluations] == [2, 4, 6] and all("eval_loss" in e for e in evaluations)
    saved = Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path / "x"), **QUIET))
    saved._load_weights(str(tmp_path / "checkpoint-2"))
    for (name, a), b in zip(trainer.model.state_dict().items(), saved.model.state_dict().values()):
        assert torch.equal(a, b), name  # the best model's weights, not the last step's


def test_callbacks_see_every_step_and_can_stop(tmp_path):
    events = []

    class Recorder(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            events.append(state.global_step)
            if state.global_step == 3:
                control.should_training_stop = True

    trainer = Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path), **QUIET, logging_steps=1,
                                                                      per_device_train_batch_size=2),
                      train_dataset=rows(), callbacks=[Recorder])
    trainer.train()
    assert events == [1, 2, 3]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and all(np.isfinite(losses))


def test_progress_bar_shows_loss_rate_and_speed(tmp_path):
    stream = io.StringIO()
    trainer = Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path), **QUIET, logging_steps=1,
                                                                      per_device_train_batch_size=2, max_steps=2),
                      train_dataset=rows(), callbacks=[ProgressCallback(stream)])
    trainer.train()
    last = stream.getvalue().split("\r")[-1]
    assert "2/2" in last and "loss" in last and "learning_rate" in last and "ex/s" in last


def test_model_init_and_bf16(tmp_path):
    """model_init is called after set_seed on every train() (the same fresh model each time); bf16 trains under CPU
    autocast with finite losses; push_to_hub says the Hub is out of reach."""
    args = TrainingArguments(str(tmp_path), **QUIET, max_steps=2, per_device_train_batch_size=4, bf16=True,
                             logging_steps=1)
    trainer = Trainer(model_init=tiny_classifier, args=args, train_dataset=rows())
    first = trainer.train().training_loss
    assert np.isfinite(first) and trainer.train().training_loss == first
    with pytest.raises(ValueError, match="Hub is out of reach"):
        Trainer(model=tiny_classifier(), args=TrainingArguments(str(tmp_path), push_to_hub=True))


def test_torch_dataset_trains_like_a_list(tmp_path):
    class Examples(torch.utils.data.Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, index):
            return {**self.items[index], "idx": index}  # an extra column the model does not take

    losses = []
    for data in (rows(), Examples(rows())):
        args = TrainingArguments(str(tmp_path), **QUIET, max_steps=3, per_device_train_batch_size=4)
        losses.append(Trainer(model=tiny_classifier(), args=args, train_dataset=data).train().training_loss)
    assert losses[0] == losses[1]
