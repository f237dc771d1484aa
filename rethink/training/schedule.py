"""The learning-rate schedule, pure functions of the step: the paper's exponential decay in steps (TF's
`exponential_decay` with `staircase=True`), x`lr_decay` every `period` steps."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base_lr: float, decay: float, period: int) -> float:
    """The learning rate of step `step` (counted from 0): `base_lr` times `decay` per `period` steps."""
    return base_lr * decay ** (step // period)


def lr_period(lr_decay_period: int | None, lr_decay_epochs: int | None, steps_per_epoch: int) -> int:
    """Steps between two decays: `trainer.lr_decay_period` when set, else `trainer.lr_decay_epochs` epochs (1: the
    paper's decay every epoch). Every loop takes its period from here."""
    return lr_decay_period or (lr_decay_epochs or 1) * steps_per_epoch


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Optimizer steps in one pass over `examples` in batches of `batch_size` (the last one may be short)."""
    return math.ceil(examples / batch_size)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group of `opt` the learning rate `lr`."""
    for group in opt.param_groups:
        group["lr"] = lr
