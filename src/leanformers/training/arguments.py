"""TrainingArguments: transformers' names and defaults for the options a fine-tune uses.

Only the knobs this Trainer implements are fields; anything else is a TypeError naming it (a silently ignored option
would be a silent wrong answer). Validation follows transformers' `__post_init__`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

STRATEGIES = ("no", "steps", "epoch")
SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "sgd")


def _strategy(name: str, value, choices=STRATEGIES) -> str:
    value = getattr(value, "value", value)  # an enum from transformers' own arguments works too
    if value not in choices:
        raise ValueError(f"TrainingArguments: {name}={value!r}; choose one of {', '.join(choices)}")
    return value


@dataclass
class TrainingArguments:
    """What the Trainer needs to know: where to write, how long and how fast to learn, when to log/evaluate/save."""

    output_dir: str | None = None
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    eval_strategy: str = "no"
    prediction_loss_only: bool = False
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    eval_accumulation_steps: int | None = None
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    label_smoothing_factor: float = 0.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    logging_dir: str | None = None
    logging_strategy: str = "steps"
    logging_first_step: bool = False
    logging_steps: float = 500
    logging_nan_inf_filter: bool = True
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_safetensors: bool = True
    save_only_model: bool = False
    use_cpu: bool = False
    seed: int = 42
    data_seed: int | None = None
    bf16: bool = False
    fp16: bool = False
    eval_steps: float | None = None
    dataloader_drop_last: bool = False
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = True
    run_name: str | None = None
    disable_tqdm: bool | None = None
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    ignore_data_skip: bool = False
    optim: str = "adamw_torch_fused"
    group_by_length: bool = False
    length_column_name: str = "length"
    report_to: str | list[str] | None = "none"
    gradient_checkpointing: bool = False
    include_for_metrics: list[str] = field(default_factory=list)
    eval_on_start: bool = False
    average_tokens_across_devices: bool = True
    push_to_hub: bool = False
    hub_model_id: str | None = None
    ddp_backend: str | None = None
    ddp_timeout: int = 1800

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = "trainer_output"  # transformers' default since 4.50
        self.output_dir = os.fspath(self.output_dir)
        self.eval_strategy = _strategy("eval_strategy", self.eval_strategy)
        self.logging_strategy = _strategy("logging_strategy", self.logging_strategy)
        self.save_strategy = _strategy("save_strategy", self.save_strategy, (*STRATEGIES, "best"))
        self.lr_scheduler_type = _strategy("lr_scheduler_type", self.lr_scheduler_type, SCHEDULES)
        self.optim = _strategy("optim", self.optim, OPTIMIZERS)
        if self.eval_strategy == "steps" and not self.eval_steps:
            if self.logging_steps <= 0:
                raise ValueError("TrainingArguments: eval_strategy='steps' needs eval_steps (or logging_steps) > 0")
            self.eval_steps = self.logging_steps
        for name in ("logging_steps", "save_steps", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value > 1 and value != int(value):
                raise ValueError(f"TrainingArguments: {name}={value} must be an integer when > 1 (a float <= 1 is a "
                                 f"fraction of the total steps)")
        self._check_best_model()
        if self.fp16:
            raise ValueError("TrainingArguments: fp16 needs a GPU's autocast; on CPU use bf16=True")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("TrainingArguments: gradient_accumulation_steps must be >= 1")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"TrainingArguments: warmup_ratio={self.warmup_ratio} must be within [0, 1]")
        if self.disable_tqdm is None:  # a progress bar only where someone watches it
            self.disable_tqdm = not sys.stderr.isatty()
        if isinstance(self.report_to, str):
            self.report_to = [] if self.report_to == "none" else [self.report_to]
        self.report_to = [name for name in (self.report_to or []) if name != "none"]
        if self.report_to:
            raise ValueError(f"TrainingArguments: report_to={self.report_to} — leanformers writes its own JSON-lines "
                             f"log in output_dir; use report_to='none'")

    def _check_best_model(self):
        if self.metric_for_best_model is None and self.load_best_model_at_end:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if not self.load_best_model_at_end:
            return
        if self.save_strategy != "best" and self.eval_strategy != self.save_strategy:
            raise ValueError(f"TrainingArguments: load_best_model_at_end needs save_strategy == eval_strategy; got "
                             f"save_strategy={self.save_strategy!r}, eval_strategy={self.eval_strategy!r}")
        if self.eval_strategy == "steps" and self.save_strategy == "steps" and self.save_steps % self.eval_steps:
            raise ValueError(f"TrainingArguments: load_best_model_at_end needs save_steps ({self.save_steps}) to be a "
                             f"multiple of eval_steps ({self.eval_steps})")

    # ---- distributed view (torchrun sets these variables; one process otherwise)
    @property
    def world_size(self) -> int:
        """Processes taking part in training (torchrun's WORLD_SIZE; 1 without torchrun)."""
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def process_index(self) -> int:
        """This process's global rank (0 without torchrun)."""
        return int(os.environ.get("RANK", "0"))

    @property
    def local_process_index(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def should_save(self) -> bool:
        """Only the main process writes checkpoints and logs."""
        return self.process_index == 0

    @property
    def should_log(self) -> bool:
        return self.process_index == 0

    @property
    def n_gpu(self) -> int:
        import torch

        return 0 if self.use_cpu or not torch.cuda.is_available() else 1

    @property
    def device(self):
        """cuda:LOCAL_RANK when a GPU is there (and use_cpu is off), else cpu."""
        import torch

        return torch.device(f"cuda:{self.local_process_index}") if self.n_gpu else torch.device("cpu")

    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """warmup_steps when set, else ceil(num_training_steps * warmup_ratio) (transformers' rule)."""
        import math

        return self.warmup_steps if self.warmup_steps > 0 else math.ceil(num_training_steps * self.warmup_ratio)

    def to_dict(self) -> dict:
        """The arguments as a plain dict (what trainer_state/logs record)."""
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
