"""Learning-rate schedules with transformers' names and shapes: a multiplier of the initial rate per step.

Each is a `LambdaLR` over a `functools.partial` of a module-level function (picklable, so `scheduler.pt` saves).
"""
from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _constant(step: int) -> float:
    return 1.0


def _constant_with_warmup(step: int, *, num_warmup_steps: int) -> float:
    return step / max(1.0, num_warmup_steps) if step < num_warmup_steps else 1.0


def _linear(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    return max(0.0, (num_training_steps - step) / max(1, num_training_steps - num_warmup_steps))


def _cosine(step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float) -> float:
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))


def get_constant_schedule(optimizer: Optimizer, last_epoch: int = -1) -> LambdaLR:
    """The rate stays at the optimizer's initial value; returns a `LambdaLR`."""
    return LambdaLR(optimizer, _constant, last_epoch=last_epoch)


def get_constant_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, last_epoch: int = -1) -> LambdaLR:
    """Linear warm-up from 0 over `num_warmup_steps`, then constant; returns a `LambdaLR`."""
    return LambdaLR(optimizer, partial(_constant_with_warmup, num_warmup_steps=num_warmup_steps), last_epoch=last_epoch)


def get_linear_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1) -> LambdaLR:
    """Linear warm-up from 0, then linear decay to 0 at `num_training_steps`; returns a `LambdaLR`."""
    schedule = partial(_linear, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    return LambdaLR(optimizer, schedule, last_epoch=last_epoch)


def get_cosine_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    """Linear warm-up, then a cosine from the initial rate down to 0 (`num_cycles=0.5`: half a wave)."""
    schedule = partial(_cosine, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                       num_cycles=num_cycles)
    return LambdaLR(optimizer, schedule, last_epoch=last_epoch)


SCHEDULERS = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
    "constant": get_constant_schedule,
    "constant_with_warmup": get_constant_schedule_with_warmup,
}


def get_scheduler(name, optimizer: Optimizer, num_warmup_steps: int | None = None,
                  num_training_steps: int | None = None, scheduler_specific_kwargs: dict | None = None) -> LambdaLR:
    """transformers' `get_scheduler`: the schedule called `name` (linear, cosine, constant, constant_with_warmup)."""
    name = getattr(name, "value", name)
    if name not in SCHEDULERS:
        raise ValueError(f"unknown lr_scheduler_type {name!r}; known: {', '.join(SCHEDULERS)}")
    if name == "constant":
        return get_constant_schedule(optimizer)
    if num_warmup_steps is None:
        raise ValueError(f"the {name!r} schedule needs num_warmup_steps")
    if name == "constant_with_warmup":
        return get_constant_schedule_with_warmup(optimizer, num_warmup_steps=num_warmup_steps)
    if num_training_steps is None:
        raise ValueError(f"the {name!r} schedule needs num_training_steps")
    return SCHEDULERS[name](optimizer, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                            **(scheduler_specific_kwargs or {}))
