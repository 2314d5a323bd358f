"""Fine-tuning: Trainer, TrainingArguments, collators, schedules and seeding with transformers' names and numbers."""
from .arguments import TrainingArguments
from .callbacks import (
    EarlyStoppingCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .collators import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    align_labels_with_tokens,
    default_data_collator,
)
from .rng import set_seed
from .schedulers import (
    get_constant_schedule,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
    get_scheduler,
)
from .trainer import EvalPrediction, PredictionOutput, Trainer, TrainOutput

__all__ = [
    "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq", "DataCollatorForTokenClassification",
    "DataCollatorWithPadding", "EarlyStoppingCallback", "EvalPrediction", "PredictionOutput", "ProgressCallback",
    "TrainOutput", "Trainer", "TrainerCallback", "TrainerControl", "TrainerState", "TrainingArguments",
    "align_labels_with_tokens", "default_data_collator", "get_constant_schedule", "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup", "get_linear_schedule_with_warmup", "get_scheduler", "set_seed",
]
