"""Trainer: transformers' Trainer behaviour (arguments, numbers, log entries, checkpoint files) as one readable loop.

    trainer = Trainer(model=model, args=TrainingArguments("out", num_train_epochs=3), train_dataset=train,
                      eval_dataset=validation, processing_class=tokenizer, compute_metrics=compute_metrics)
    trainer.train()                  # or train(resume_from_checkpoint=True) after an interruption
    trainer.evaluate()

The loop follows transformers' order of operations so that the same model, data and seed give the same losses and
weights: the epoch order is a permutation seeded with seed + epoch, gradient accumulation windows are fetched whole,
the loss is divided by the window's batch count (causal LMs: summed over tokens and divided by the window's label
count, as transformers' loss kwargs do), gradients are clipped, then AdamW (fused), then the schedule steps.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from itertools import islice
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, distributed
from .arguments import TrainingArguments
from .callbacks import (
    CallbackHandler,
    DefaultFlowCallback,
    JsonLinesLogCallback,
    ProgressCallback,
    TrainerControl,
    TrainerState,
)
from .collators import DataCollatorWithPadding, default_data_collator
from .data import Features, check_dataset, check_labels, keep_columns, lengths
from .rng import rng_state, set_rng_state, set_seed
from .schedulers import get_scheduler


class EvalPrediction:
    """What compute_metrics receives: predictions (logits as NumPy) and label_ids; unpacks as (predictions, labels)."""

    def __init__(self, predictions, label_ids, inputs=None, losses=None):
        self.predictions, self.label_ids, self.inputs, self.losses = predictions, label_ids, inputs, losses

    def __iter__(self):
        return iter((self.predictions, self.label_ids))

    def __getitem__(self, index):
        return (self.predictions, self.label_ids)[index]


class TrainOutput(NamedTuple):
    global_step: int
    training_loss: float
    metrics: dict


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict


class Trainer:
    """Fine-tunes `model` on `train_dataset` with `args`; evaluates, predicts and saves like transformers' Trainer."""

    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, model_init=None, compute_loss_func=None,
                 compute_metrics=None, callbacks=None, optimizers=(None, None), preprocess_logits_for_metrics=None,
                 tokenizer=None):
        self.args = args if args is not None else TrainingArguments()
        set_seed(self.args.seed)  # before model_init, as transformers: the same seed gives the same fresh head
        self.model_init = model_init
        if model is None:
            if model_init is None:
                raise ValueError("Trainer needs a model (or a model_init function that returns one)")
            model = model_init()
        if self.args.push_to_hub:
            raise ValueError("push_to_hub=True: the Hugging Face Hub is out of reach from leanformers; train, then "
                             "save_model() and upload the folder with huggingface_hub yourself")
        distributed.setup(self.args)
        self.model = model.to(self.args.device)
        self.model_wrapped = self.model
        self.processing_class = processing_class if processing_class is not None else tokenizer
        if data_collator is None:
            has_pad = self.processing_class is not None and hasattr(self.processing_class, "pad")
            data_collator = DataCollatorWithPadding(self.processing_class) if has_pad else default_data_collator
        self.data_collator = data_collator
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.compute_metrics, self.compute_loss_func = compute_metrics, compute_loss_func
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.optimizer, self.lr_scheduler = optimizers
        self._created_scheduler = False
        default = [DefaultFlowCallback, JsonLinesLogCallback]
        if not self.args.disable_tqdm and self.args.should_log:
            default.append(ProgressCallback)
        self.callback_handler = CallbackHandler(default + list(callbacks or []), self.model)
        self.state = TrainerState(is_local_process_zero=self.args.local_process_index == 0,
                                  is_world_process_zero=self.args.should_save)
        self.control = TrainerControl()
        self._last_checkpoint = None
        task = getattr(self.model, "task", None)
        self.label_names = self.args.label_names or (
            ["start_positions", "end_positions"] if task == "question_answering" else ["labels"])
        # transformers passes num_items_in_batch to models whose forward takes **kwargs: its causal LMs
        self.model_accepts_loss_kwargs = getattr(self.model, "accepts_loss_kwargs", task == "causal_lm")
        self.control = self.callback_handler.call("on_init_end", self.args, self.state, self.control)

    @property
    def tokenizer(self):
        return self.processing_class

    # ------------------------------------------------------------------ callbacks and logs
    def add_callback(self, callback) -> None:
        self.callback_handler.add_callback(callback)

    def remove_callback(self, callback) -> None:
        self.callback_handler.remove_callback(callback)

    def pop_callback(self, callback):
        found = next((cb for cb in self.callback_handler.callbacks if cb is callback or type(cb) is callback), None)
        if found is not None:
            self.callback_handler.remove_callback(found)
        return found

    def _event(self, event: str, **kwargs) -> None:
        self.control = self.callback_handler.call(event, self.args, self.state, self.control, **kwargs)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """Record `logs` (with epoch and step) in state.log_history and hand them to the callbacks."""
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self._event("on_log", logs=logs)

    # ------------------------------------------------------------------ optimizer and schedule
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Weight decay applies to every weight except biases and normalisation layers (transformers' rule)."""
        import re

        forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
        names = []
        for module_name, module in model.named_modules():
            is_norm = isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()
            for name, _ in module.named_parameters(recurse=False):
                full = f"{module_name}.{name}" if module_name else name
                if not is_norm and not any(re.search(p, full.lower()) for p in forbidden):
                    names.append(full)
        return names

    def create_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over two groups (decayed weights, then the rest), as transformers' default adamw_torch_fused."""
        if self.optimizer is not None:
            return self.optimizer
        args, named = self.args, list(self.model.named_parameters())
        decay = set(self.get_decay_parameter_names(self.model))
        groups = [
            {"params": [p for n, p in named if n in decay and p.requires_grad], "weight_decay": args.weight_decay},
            {"params": [p for n, p in named if n not in decay and p.requires_grad], "weight_decay": 0.0}]
        if not any(p.requires_grad for _, p in named):
            raise ValueError("the model has no trainable parameter (every requires_grad is False)")
        if args.optim == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=args.learning_rate)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                               eps=args.adam_epsilon, fused=args.optim == "adamw_torch_fused")
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(self.args.lr_scheduler_type, optimizer or self.optimizer,
                                              num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                                              num_training_steps=num_training_steps,
                                              scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
            self._created_scheduler = True
        return self.lr_scheduler

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        self.create_optimizer()
        self.create_scheduler(num_training_steps)

    def _learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ------------------------------------------------------------------ data
    def _loader(self, dataset, batch_size: int, what: str, shuffle: bool) -> _Loader:
        dataset = check_dataset(dataset, what)
        keep = keep_columns(dataset, distributed.unwrap(self.model), what, self.args.remove_unused_columns)
        group = lengths(dataset, self.args.length_column_name) if shuffle and self.args.group_by_length else None
        return _Loader(Features(dataset, keep), self.data_collator, batch_size, self.args, shuffle, group)

    def get_train_dataloader(self) -> _Loader:
        """The training batches of this process, one epoch at a time (`loader.epoch(n)`)."""
        return self._loader(self.train_dataset, self.args.per_device_train_batch_size, "train_dataset", True)

    def get_eval_dataloader(self, eval_dataset=None) -> _Loader:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        return self._loader(dataset, self.args.per_device_eval_batch_size, "eval_dataset", False)

    def _prepare_inputs(self, inputs: dict) -> dict:
        device = self.args.device
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dict(inputs).items()}
        check_labels(distributed.unwrap(self.model), inputs)
        return inputs

    def _autocast(self):
        if not self.args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.args.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ one step
    def compute_loss(self, model: nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):
        """The loss of one batch. With `num_items_in_batch` (causal LMs under gradient accumulation, as transformers)
        it is the sum of the token losses divided by the label count of the whole accumulation window."""
        smoothing = self.args.label_smoothing_factor
        labels = inputs.pop("labels") if (self.compute_loss_func is not None or num_items_in_batch is not None
                                          or smoothing) and "labels" in inputs else None
        outputs = model(**inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif labels is not None and smoothing:  # transformers' LabelSmoother (it ignores num_items_in_batch)
            causal = getattr(distributed.unwrap(model), "task", None) == "causal_lm"
            loss = label_smoothed_loss(outputs["logits"], labels, smoothing, shift=causal)
        elif labels is not None:  # transformers' ForCausalLMLoss with num_items_in_batch
            logits = outputs["logits"].float()
            shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1).to(logits.device),
                                   ignore_index=-100, reduction="sum") / num_items_in_batch
        else:
            if "loss" not in outputs or outputs["loss"] is None:
                raise ValueError(f"the model returned no loss (its outputs: {list(outputs.keys())}); the batch has "
                                 f"{list(inputs)} — give the examples a 'labels' (or 'label') column")
            loss = outputs["loss"]
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * distributed.world_size()  # DDP averages the gradients; the count was global
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None, window: int = 1) -> torch.Tensor:
        """Forward and backward on one batch; returns the (detached) loss as it entered backward."""
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self._autocast():
            loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        if num_items_in_batch is None and self.compute_loss_func is None:
            loss = loss / window  # an accumulation window's gradients average its batches
        loss.backward()
        return loss.detach()

    def _num_items(self, window: list[dict]):
        if not self.model_accepts_loss_kwargs and self.compute_loss_func is None:
            return None
        if "labels" not in window[0] or not isinstance(window[0]["labels"], torch.Tensor):
            return None
        count = sum(batch["labels"].ne(-100).sum() for batch in window)
        if self.args.average_tokens_across_devices and distributed.world_size() > 1:
            count = count.clone()
            torch.distributed.all_reduce(count)
        return count.to(self.args.device)

    def floating_point_ops(self, inputs: dict) -> float:
        """6 x non-embedding parameters x input tokens (transformers' estimate behind total_flos)."""
        ids = inputs.get("input_ids")
        if ids is None:
            return 0.0
        if not hasattr(self, "_non_embedding_params"):
            model = distributed.unwrap(self.model)
            embedding = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
            self._non_embedding_params = sum(p.numel() for p in model.parameters() if id(p) not in embedding)
        return 6.0 * self._non_embedding_params * ids.numel()

    # ------------------------------------------------------------------ the loop
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs) -> TrainOutput:
        """Train for num_train_epochs (or max_steps); resume_from_checkpoint=True picks the newest complete checkpoint
        in output_dir, a path that folder. Returns TrainOutput(global_step, training_loss, metrics)."""
        if kwargs:
            raise TypeError(f"train() got unexpected arguments {sorted(kwargs)}")
        args = self.args
        resume = checkpoint.resolve_resume(resume_from_checkpoint, args.output_dir)
        self._check_output_dir()
        if self.model_init is not None:  # every train() starts from a fresh model, drawn after set_seed (transformers)
            set_seed(args.seed)
            self.model = self.callback_handler.model = self.model_init().to(args.device)
            self.optimizer, self.lr_scheduler = None, None
        loader = self.get_train_dataloader()
        ga = args.gradient_accumulation_steps
        updates_per_epoch = max(math.ceil(len(loader) / ga), 1)
        if args.max_steps > 0:
            max_steps, num_epochs = args.max_steps, math.ceil(args.max_steps / updates_per_epoch)
            num_samples = max_steps * args.per_device_train_batch_size * ga * distributed.world_size()
        else:
            max_steps = math.ceil(args.num_train_epochs * updates_per_epoch)
            num_epochs = math.ceil(args.num_train_epochs)
            num_samples = len(self.train_dataset) * args.num_train_epochs
        if self._created_scheduler:
            self.lr_scheduler, self._created_scheduler = None, False
        self.create_optimizer_and_scheduler(max_steps)
        self.state = TrainerState(max_steps=max_steps, num_train_epochs=num_epochs, epoch=0,
                                  train_batch_size=args.per_device_train_batch_size,
                                  is_local_process_zero=args.local_process_index == 0,
                                  is_world_process_zero=args.should_save)
        self.state.compute_steps(args, max_steps)
        if args.gradient_checkpointing:
            if not hasattr(self.model, "gradient_checkpointing_enable"):
                raise ValueError(f"gradient_checkpointing=True but {type(self.model).__name__} has no "
                                 f"gradient_checkpointing_enable()")
            self.model.gradient_checkpointing_enable()
        self._loss = {"since_log": 0.0, "total": 0.0, "last_logged": 0}
        if resume is not None:
            self._load_checkpoint(resume)
        model = self.model_wrapped = distributed.wrap(self.model, args)
        self.callback_handler.model = self.model
        with _StopOnInterrupt() as interrupt:
            self._loop(model, loader, updates_per_epoch, num_epochs, resume, interrupt)
        if interrupt.requested:
            raise KeyboardInterrupt(f"training stopped at step {self.state.global_step} (Ctrl-C); the checkpoint is in "
                                    f"{self._last_checkpoint}: resume with trainer.train(resume_from_checkpoint=True)")
        return self._finish(num_samples)

    def _loop(self, model, loader, updates_per_epoch, num_epochs, resume, interrupt):
        args, ga = self.args, self.args.gradient_accumulation_steps
        first_epoch = self.state.global_step // updates_per_epoch
        skip = 0 if args.ignore_data_skip else (self.state.global_step % updates_per_epoch) * ga
        self._start_time = time.time()
        tr_loss = torch.tensor(self._loss.pop("since_log"), device=args.device)
        model.zero_grad(set_to_none=True)
        self._event("on_train_begin")
        if args.eval_on_start and resume is None:
            self._evaluate()
        grad_norm, learning_rate = None, None
        for epoch in range(first_epoch, num_epochs):
            epoch_skip = skip if epoch == first_epoch else 0
            batches = loader.epoch(epoch, epoch_skip)
            self._event("on_epoch_begin")
            if resume is not None:  # the generators as they were right after the checkpoint's step
                set_rng_state(checkpoint.load_torch(self._rng_file(resume), "random-number state"))
                resume = None
            step = epoch_skip - 1
            while window := list(islice(batches, ga)):
                num_items = self._num_items(window)
                for i, inputs in enumerate(window):
                    step += 1
                    if i == 0:
                        self._event("on_step_begin")
                    sync = i == len(window) - 1 or not hasattr(model, "no_sync")
                    with contextlib.nullcontext() if sync else model.no_sync():
                        loss = self.training_step(model, inputs, num_items, len(window))
                    if args.logging_nan_inf_filter and not torch.isfinite(loss):  # transformers' nan/inf filter
                        tr_loss = tr_loss + tr_loss / (1 + self.state.global_step - self._loss["last_logged"])
                    else:
                        tr_loss = tr_loss + loss
                    self.state.total_flos += self.floating_point_ops(inputs)
                    if i < len(window) - 1:
                        self._event("on_substep_end")
                grad_norm, learning_rate = self._optimizer_step(model)
                self.state.global_step += 1
                self.state.epoch = epoch + (step + 1) / len(loader)
                self._event("on_step_end")
                if distributed.any_true(interrupt.requested):
                    interrupt.requested = True
                    self.control.should_save = self.control.should_training_stop = True
                tr_loss = self._maybe_log_save_evaluate(tr_loss, grad_norm, learning_rate)
                if self.control.should_epoch_stop or self.control.should_training_stop:
                    break
            self._event("on_epoch_end")
            tr_loss = self._maybe_log_save_evaluate(tr_loss, grad_norm, learning_rate)
            if self.control.should_training_stop:
                break
        self._loss["since_log"] = tr_loss.item()

    def _optimizer_step(self, model):
        """Clip, step, schedule; returns (the gradient norm before clipping, the learning rate this step used)."""
        grad_norm = None
        if self.args.max_grad_norm is not None and self.args.max_grad_norm > 0:
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        self._event("on_pre_optimizer_step")
        self.optimizer.step()
        self._event("on_optimizer_step")
        learning_rate = self._learning_rate()
        self.lr_scheduler.step()
        model.zero_grad(set_to_none=True)
        return grad_norm, learning_rate

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, learning_rate):
        if self.control.should_log and self.state.global_step > self._loss["last_logged"]:
            loss = distributed.mean(tr_loss).item()
            tr_loss = tr_loss - tr_loss
            logs = {"loss": round(loss / (self.state.global_step - self._loss["last_logged"]), 4)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm.item() if isinstance(grad_norm, torch.Tensor) else grad_norm
            logs["learning_rate"] = learning_rate if learning_rate is not None else self._learning_rate()
            self._loss["total"] += loss
            self._loss["last_logged"] = self.state.global_step
            self.log(logs)
        if self.control.should_evaluate:
            is_best = self._update_best(self._evaluate())
            if self.args.save_strategy == "best":
                self.control.should_save = is_best
        if self.control.should_save:
            self._loss["since_log"] = tr_loss.item()
            self._save_checkpoint()
            self._event("on_save")
        return tr_loss

    def _finish(self, num_samples) -> TrainOutput:
        args = self.args
        if args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            self._load_weights(self.state.best_model_checkpoint)
        self._loss["total"] += distributed.mean(torch.tensor(self._loss.pop("since_log"))).item()
        train_loss = self._loss["total"] / max(self.state.global_step, 0.001)
        metrics = speed_metrics("train", self._start_time, num_samples, self.state.max_steps)
        metrics["total_flos"] = self.state.total_flos
        metrics["train_loss"] = train_loss
        self.log(dict(metrics))
        self._event("on_train_end")
        return TrainOutput(self.state.global_step, train_loss, metrics)

    # ------------------------------------------------------------------ evaluation and prediction
    def _evaluate(self) -> dict:
        return self.evaluate()

    def _update_best(self, metrics: dict) -> bool:
        """Track the best value of metric_for_best_model (and its step); True when this evaluation is the best."""
        name = self.args.metric_for_best_model
        if name is None:
            return False
        name = name if name.startswith("eval_") else f"eval_{name}"
        if name not in metrics:
            raise KeyError(f"metric_for_best_model is {name!r}, which the evaluation does not report; it has "
                           f"{sorted(metrics)}. Change metric_for_best_model or compute_metrics.")
        value, best = metrics[name], self.state.best_metric
        if best is None or (value > best if self.args.greater_is_better else value < best):
            self.state.best_metric = value
            if self.args.save_strategy in ("steps", "epoch"):
                self.state.best_global_step = self.state.global_step
            return True
        return False

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Loss (and compute_metrics) over the evaluation set, keys prefixed 'eval_'; logged and returned."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, dict):
            metrics = {}
            for name, part in dataset.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        loader = self.get_eval_dataloader(dataset)
        output = self._predict_everywhere(loader, metric_key_prefix, ignore_keys,
                                          loss_only=self.compute_metrics is None or self.args.prediction_loss_only)
        self.log(dict(output.metrics))
        self._event("on_evaluate", metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset, ignore_keys: list[str] | None = None,
                metric_key_prefix: str = "test") -> PredictionOutput:
        """PredictionOutput(predictions, label_ids, metrics) over `test_dataset` (labels optional)."""
        loader = self._loader(test_dataset, self.args.per_device_eval_batch_size, "test_dataset", False)
        output = self._predict_everywhere(loader, metric_key_prefix, ignore_keys, loss_only=False)
        self._event("on_predict", metrics=output.metrics)
        return output

    def _predict_everywhere(self, loader, prefix, ignore_keys, loss_only) -> PredictionOutput:
        """Under DDP rank 0 runs the whole set on the unwrapped model and shares the result (one set of metrics)."""
        output = None
        if distributed.rank() == 0:
            with distributed.single_process_view():
                output = self._prediction_loop(loader, prefix, ignore_keys, loss_only)
        return distributed.broadcast(output)

    def _prediction_loop(self, loader, prefix, ignore_keys, loss_only) -> PredictionOutput:
        start = time.time()
        model = distributed.unwrap(self.model)
        was_training = model.training
        model.eval()
        losses, predictions, labels, batches = [], None, None, 0
        ignore = set(ignore_keys or []) | {"loss", "past_key_values"}
        for inputs in loader.epoch(0):
            batches += 1
            inputs = self._prepare_inputs(inputs)
            batch_labels = tuple(inputs.get(name) for name in self.label_names)
            has_labels = all(label is not None for label in batch_labels)
            with torch.no_grad(), self._autocast():
                if has_labels:
                    loss, outputs = self.compute_loss(model, dict(inputs), return_outputs=True)
                    size = next(v for v in inputs.values() if isinstance(v, torch.Tensor)).shape[0]
                    losses.append((loss.detach().float().item(), size))
                else:
                    outputs = model(**inputs)
            if loss_only:
                continue
            logits = tuple(v for k, v in outputs.items() if k not in ignore and isinstance(v, torch.Tensor))
            logits = logits[0] if len(logits) == 1 else logits
            label_ids = (batch_labels[0] if len(batch_labels) == 1 else batch_labels) if has_labels else None
            if self.preprocess_logits_for_metrics is not None:
                logits = self.preprocess_logits_for_metrics(logits, label_ids)
            predictions = _concat(predictions, _numpy(logits))
            labels = _concat(labels, _numpy(label_ids)) if label_ids is not None else labels
        model.train(was_training)
        metrics = {}
        if self.compute_metrics is not None and predictions is not None and labels is not None:
            metrics = dict(self.compute_metrics(EvalPrediction(predictions=predictions, label_ids=labels)))
        if losses:
            metrics["loss"] = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
        metrics = {(k if k.startswith(f"{prefix}_") else f"{prefix}_{k}"): _plain(v) for k, v in metrics.items()}
        metrics.update(speed_metrics(prefix, start, len(loader.features), batches))
        return PredictionOutput(predictions, labels, metrics)

    # ------------------------------------------------------------------ saving and resuming
    def _check_output_dir(self) -> None:
        if not self.args.should_save:
            return
        folder = self.args.output_dir
        try:
            os.makedirs(folder, exist_ok=True)
            probe = os.path.join(folder, f".write-test-{os.getpid()}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as err:
            raise ValueError(f"output_dir {folder!r} is not writable ({err.strerror or err}); pass "
                             f"TrainingArguments(output_dir=...) a folder you can write to") from None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write the model (transformers' safetensors + config.json), the tokenizer and training_args.bin."""
        if not self.args.should_save:
            return
        output_dir = os.fspath(output_dir or self.args.output_dir)
        os.makedirs(output_dir, exist_ok=True)
        model = distributed.unwrap(self.model)
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(output_dir, safe_serialization=self.args.save_safetensors)
        else:
            from safetensors.torch import save_model

            save_model(model, os.path.join(output_dir, "model.safetensors"))
        if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _rng_file(self, folder: str) -> str:
        world = distributed.world_size()
        return os.path.join(folder, f"rng_state_{distributed.rank()}.pth" if world > 1 else "rng_state.pth")

    def _save_checkpoint(self) -> None:
        """checkpoint-N via a temporary folder renamed when complete; then rotation by save_total_limit."""
        args, step = self.args, self.state.global_step
        tmp = checkpoint.begin(args.output_dir, step) if args.should_save else None
        tmp = distributed.broadcast(tmp)
        final = os.path.join(args.output_dir, f"{checkpoint.PREFIX}-{step}")
        if args.should_save:
            self.save_model(tmp, _internal_call=True)
            if not args.save_only_model:
                checkpoint.save_torch(self.optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
                checkpoint.save_torch(self.lr_scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
        distributed.barrier()
        # each process's generators, and its running loss (so the first log after a resume averages the same steps)
        checkpoint.save_torch({**rng_state(), "leanformers_loss": dict(self._loss)}, self._rng_file(tmp))
        distributed.barrier()
        if args.should_save:
            if self.state.best_global_step:
                best = os.path.join(args.output_dir, f"{checkpoint.PREFIX}-{self.state.best_global_step}")
                if self.state.best_global_step == step or os.path.isdir(best):
                    self.state.best_model_checkpoint = best
            self.state.stateful_callbacks = {type(cb).__name__: cb.state() for cb in self.callback_handler.callbacks
                                             if hasattr(cb, "state")}
            self.state.save_to_json(os.path.join(tmp, checkpoint.STATE_FILE))  # last: it marks the folder complete
            checkpoint.commit(tmp, args.output_dir, step)
            checkpoint.rotate(args.output_dir, args.save_total_limit, self.state.best_model_checkpoint)
        self.state.best_model_checkpoint = distributed.broadcast(self.state.best_model_checkpoint)
        self._last_checkpoint = final
        distributed.barrier()

    def _load_weights(self, folder: str) -> None:
        """Copy a saved model's weights into self.model (shapes must match: else the checkpoint is not this model's)."""
        model = distributed.unwrap(self.model)
        try:
            if hasattr(type(model), "from_pretrained") and os.path.isfile(os.path.join(folder, "config.json")):
                saved = type(model).from_pretrained(folder)
                missing = getattr(saved, "loading_info", {}).get("missing_keys", [])
                if missing:
                    raise ValueError(f"it lacks the weights {missing[:5]}")
                result = model.load_state_dict(saved.state_dict(), strict=False)
                missing = result.missing_keys
            else:  # a plain nn.Module: its own names, shared tensors stored once (safetensors' save_model)
                from safetensors.torch import load_model

                missing, _ = load_model(model, os.path.join(folder, "model.safetensors"), strict=False)
            if missing:
                raise ValueError(f"it lacks the weights {list(missing)[:5]}")
        except (ValueError, RuntimeError, OSError) as err:
            raise ValueError(f"the checkpoint {folder!r} does not fit this model ({type(model).__name__}): {err}") \
                from None

    def _load_checkpoint(self, folder: str) -> None:
        self._load_weights(folder)
        optimizer_file = os.path.join(folder, "optimizer.pt")
        if os.path.isfile(optimizer_file):
            try:
                self.optimizer.load_state_dict(checkpoint.load_torch(optimizer_file, "optimizer"))
            except ValueError as err:
                raise ValueError(f"the optimizer state in {optimizer_file!r} does not fit this model's parameters: "
                                 f"{err}") from None
            self.lr_scheduler.load_state_dict(checkpoint.load_torch(os.path.join(folder, "scheduler.pt"),
                                                                    "scheduler"))
        saved = TrainerState.load_from_json(os.path.join(folder, checkpoint.STATE_FILE))
        if saved.train_batch_size not in (None, self.args.per_device_train_batch_size):
            raise ValueError(f"the checkpoint {folder!r} was trained with per_device_train_batch_size="
                             f"{saved.train_batch_size}, these arguments say {self.args.per_device_train_batch_size}: "
                             f"the data order would not continue where it stopped")
        for name in ("max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps"):
            setattr(saved, name, getattr(self.state, name))
        self.state = saved
        for callback in self.callback_handler.callbacks:  # e.g. EarlyStoppingCallback's patience counter
            for name, value in saved.stateful_callbacks.get(type(callback).__name__, {}).get("attributes", {}).items():
                setattr(callback, name, value)
        extra = checkpoint.load_torch(self._rng_file(folder), "random-number state").get("leanformers_loss")
        if extra:
            self._loss = dict(extra)
        else:  # a transformers checkpoint: the running loss starts from zero at the checkpoint's step
            self._loss = {"since_log": 0.0, "total": 0.0, "last_logged": saved.global_step}


class _Loader:
    """The batches of one epoch for this process: indices from `distributed.epoch_indices`, collated by a torch
    DataLoader whose own generator (seed + epoch) seeds its workers, so iterating draws nothing from torch's global
    generator (dropout and masking stay reproducible across a resume)."""

    def __init__(self, features, collate, batch_size, args, shuffle, group_lengths=None):
        self.features, self.collate, self.batch_size, self.args = features, collate, batch_size, args
        self.shuffle, self.group_lengths = shuffle, group_lengths
        self.seed = args.data_seed if args.data_seed is not None else args.seed

    def _indices(self, epoch: int) -> list[int]:
        return distributed.epoch_indices(len(self.features), self.seed, epoch, self.shuffle,
                                         self.args.dataloader_drop_last, self.group_lengths, self.batch_size)

    def __len__(self) -> int:
        n = len(self._indices(0)) if distributed.world_size() > 1 else len(self.features)
        return n // self.batch_size if self.args.dataloader_drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int, skip: int = 0):
        indices = self._indices(epoch)
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.args.dataloader_drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        batches = batches[skip:]
        if not batches:
            return iter(())
        return iter(torch.utils.data.DataLoader(
            self.features, batch_sampler=batches, collate_fn=self.collate,
            num_workers=self.args.dataloader_num_workers, generator=torch.Generator().manual_seed(self.seed + epoch)))


class _StopOnInterrupt:
    """Ctrl-C (SIGINT) during train() asks the loop to stop after the current step and save a checkpoint; a second
    Ctrl-C interrupts at once. Only the main thread can own a signal handler; elsewhere this does nothing."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def speed_metrics(split: str, start_time: float, num_samples=None, num_steps=None) -> dict:
    """{split}_runtime / _samples_per_second / _steps_per_second, rounded as transformers does."""
    runtime = time.time() - start_time
    result = {f"{split}_runtime": round(runtime, 4)}
    if runtime == 0:
        return result
    if num_samples is not None:
        result[f"{split}_samples_per_second"] = round(num_samples / runtime, 3)
    if num_steps is not None:
        result[f"{split}_steps_per_second"] = round(num_steps / runtime, 3)
    return result


def _numpy(value):
    if isinstance(value, (tuple, list)):
        return type(value)(_numpy(v) for v in value)
    return value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()


def _concat(total, new):
    """Batches joined along the first axis; sequence lengths that differ are padded with -100 (transformers)."""
    if total is None:
        return new
    if isinstance(new, (tuple, list)):
        return type(new)(_concat(t, n) for t, n in zip(total, new))
    if total.ndim < 2 or total.shape[1:] == new.shape[1:]:
        return np.concatenate([total, new])
    shape = (total.shape[0] + new.shape[0], max(total.shape[1], new.shape[1]), *total.shape[2:])
    out = np.full(shape, -100, dtype=total.dtype)
    out[: total.shape[0], : total.shape[1]] = total
    out[total.shape[0]:, : new.shape[1]] = new
    return out


def _plain(value):
    if isinstance(value, (np.generic, torch.Tensor)) and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def label_smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float, shift: bool = False,
                        ignore_index: int = -100) -> torch.Tensor:
    """transformers' LabelSmoother: (1 - epsilon) * NLL + epsilon * the mean of -log p over the classes, over the
    positions whose label is not `ignore_index`; `shift` compares position t's logits with label t + 1 (causal LMs)."""
    if shift:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    log_probs = -F.log_softmax(logits, dim=-1)
    if labels.dim() == log_probs.dim() - 1:
        labels = labels.unsqueeze(-1)
    padding = labels.eq(ignore_index)
    nll = log_probs.gather(dim=-1, index=labels.clamp(min=0)).masked_fill(padding, 0.0)
    smoothed = log_probs.sum(dim=-1, keepdim=True, dtype=torch.float32).masked_fill(padding, 0.0)
    active = padding.numel() - padding.long().sum()
    return (1 - epsilon) * nll.sum() / active + epsilon * smoothed.sum() / (active * log_probs.shape[-1])
