"""TrainerState, TrainerControl and callbacks: the hooks, flags and state transformers' Trainer exposes.

The loop asks the callbacks at each event; they answer by setting flags on `control` (log, evaluate, save, stop).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class TrainerState:
    """Where training stands; saved as `trainer_state.json` in every checkpoint (transformers' keys)."""

    epoch: float | None = None
    global_step: int = 0
    max_steps: int = 0
    logging_steps: float = 500
    eval_steps: float = 500
    save_steps: float = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict | None = None
    stateful_callbacks: dict = field(default_factory=dict)

    def compute_steps(self, args, max_steps: int) -> None:
        """logging/eval/save steps as absolute step counts (a value < 1 is a fraction of max_steps)."""
        for kind in ("logging", "eval", "save"):
            steps = getattr(args, f"{kind}_steps")
            if steps is not None:
                setattr(self, f"{kind}_steps", math.ceil(max_steps * steps) if steps < 1 else int(steps))

    def save_to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_json(cls, path: str) -> TrainerState:
        """The state a checkpoint saved; unknown keys (a newer transformers') are ignored."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainerControl:
    """Flags the callbacks set to steer the loop; the loop resets them after acting."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """Subclass and override any event; each receives (args, state, control, **kwargs) and may set control flags."""

    def on_init_end(self, args, state, control, **kwargs): pass
    def on_train_begin(self, args, state, control, **kwargs): pass
    def on_train_end(self, args, state, control, **kwargs): pass
    def on_epoch_begin(self, args, state, control, **kwargs): pass
    def on_epoch_end(self, args, state, control, **kwargs): pass
    def on_step_begin(self, args, state, control, **kwargs): pass
    def on_pre_optimizer_step(self, args, state, control, **kwargs): pass
    def on_optimizer_step(self, args, state, control, **kwargs): pass
    def on_substep_end(self, args, state, control, **kwargs): pass
    def on_step_end(self, args, state, control, **kwargs): pass
    def on_evaluate(self, args, state, control, **kwargs): pass
    def on_predict(self, args, state, control, metrics, **kwargs): pass
    def on_save(self, args, state, control, **kwargs): pass
    def on_log(self, args, state, control, logs=None, **kwargs): pass
    def on_prediction_step(self, args, state, control, **kwargs): pass


class CallbackHandler:
    """Calls every callback in order for an event; a callback may return a new control or None."""

    def __init__(self, callbacks, model=None):
        self.callbacks = []
        self.model = model
        for callback in callbacks:
            self.add_callback(callback)

    def add_callback(self, callback):
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def remove_callback(self, callback):
        self.callbacks = [cb for cb in self.callbacks if cb is not callback and type(cb) is not callback]

    # flags an event clears before the callbacks see it (transformers' CallbackHandler)
    RESETS: ClassVar[dict] = {"on_train_begin": ("should_training_stop",), "on_epoch_begin": ("should_epoch_stop",),
              "on_step_begin": ("should_log", "should_evaluate", "should_save"), "on_log": ("should_log",),
              "on_evaluate": ("should_evaluate",), "on_save": ("should_save",)}

    def call(self, event: str, args, state, control, **kwargs) -> TrainerControl:
        for flag in self.RESETS.get(event, ()):
            setattr(control, flag, False)
        for callback in self.callbacks:
            result = getattr(callback, event)(args, state, control, model=self.model, **kwargs)
            if result is not None:
                control = result
        return control


class DefaultFlowCallback(TrainerCallback):
    """Logging, evaluation and saving at the steps / epochs TrainingArguments asks for (transformers' rules)."""

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step == 1 and args.logging_first_step:
            control.should_log = True
        if args.logging_strategy == "steps" and step % state.logging_steps == 0:
            control.should_log = True
        if args.eval_strategy == "steps" and step % state.eval_steps == 0:
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.save_steps > 0 and step % state.save_steps == 0:
            control.should_save = True
        if step >= state.max_steps:
            control.should_training_stop = True
            if args.save_strategy == "steps":  # the last step is always saved
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch":
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


class EarlyStoppingCallback(TrainerCallback):
    """Stop when `metric_for_best_model` has not improved (by more than the threshold) for `patience` evaluations."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None:
            raise ValueError("EarlyStoppingCallback needs TrainingArguments(metric_for_best_model=...) "
                             "(or load_best_model_at_end=True, which defaults it to 'loss')")
        if args.eval_strategy == "no":
            raise ValueError("EarlyStoppingCallback needs evaluations: set eval_strategy='steps' or 'epoch'")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            raise KeyError(f"EarlyStoppingCallback: the evaluation has no {name!r}; it has {sorted(metrics or {})}")
        best = state.best_metric  # the Trainer updates it after the callbacks saw the metrics
        better = best is None or ((value > best) if args.greater_is_better else (value < best))
        if better and (best is None or abs(value - best) > self.early_stopping_threshold):
            self.early_stopping_patience_counter = 0
        else:
            self.early_stopping_patience_counter += 1
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state(self) -> dict:
        return {"args": {"early_stopping_patience": self.early_stopping_patience,
                         "early_stopping_threshold": self.early_stopping_threshold},
                "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter}}


class ProgressCallback(TrainerCallback):
    """One updating line on stderr: step/total, loss, learning rate, examples per second."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.last = {}
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.last.update({k: v for k, v in (logs or {}).items() if k in ("loss", "learning_rate", "eval_loss")})

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        examples = (state.global_step - self.first_step) * (state.train_batch_size or 0) \
            * args.gradient_accumulation_steps * args.world_size
        parts = [f"{state.global_step}/{state.max_steps}"]
        parts += [f"{k} {v:.4g}" for k, v in self.last.items()]
        parts.append(f"{examples / elapsed:.1f} ex/s")
        self.stream.write("\r" + "  ".join(parts) + " " * 4)
        self.stream.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.stream.write("\n")
        self.stream.flush()


class JsonLinesLogCallback(TrainerCallback):
    """Appends every log entry (as in trainer.state.log_history) to `output_dir/trainer_log.jsonl`."""

    filename = "trainer_log.jsonl"

    def on_train_begin(self, args, state, control, **kwargs):
        """A fresh run starts a fresh log; a resumed one keeps the entries up to its checkpoint's step (the killed
        run may have logged past it, and those steps are about to run again)."""
        path = os.path.join(args.output_dir, self.filename)
        if not args.should_log or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= state.global_step
                    and state.global_step > 0]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not args.should_log:
            return
        entry = {**(logs or {}), "step": state.global_step, "time": round(time.time(), 3)}
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, self.filename), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
