"""The `trainer` config plus the regularizer switches that act inside the loop: what every loop trains by.

One dataclass, checked on construction (the first bad value stops with one line), used by the in-memory, streamed
and packed loops alike through `rethink.training.setup`, so an option added here reaches every loop (or is refused
by `rethink.training.fit.refuse`, where a loop cannot honour it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rethink.checks import check, in_range, is_int, is_number
from rethink.errors import RethinkError
from rethink.training.optim import OPTIMIZERS


@dataclass
class TrainSettings:
    """The `trainer` config plus the regularizer switches that act inside the loop."""

    batch_size: int = 128
    max_epochs: int = 200
    target_train_acc: float = 0.999
    stop_at_target: bool = True
    patience: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    lr_decay: float = 0.95
    lr_decay_period: int | None = None
    eval_batch_size: int | str = "auto"
    device: str = "auto"
    channels_last: str | bool = "auto"
    amp: str | bool = "auto"
    compile: bool = False
    weight_decay: float = 0.0
    weight_decay_on: str = "weights"
    random_crop: bool = False
    flip: bool = False
    rotate: float = 0.0
    crop_size: int | None = None
    seed: int = 0
    checkpoint_every: int | None = 5  # epochs between checkpoints (0 / None: never)
    optimizer: str = "sgd"
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1.0
    label_smoothing: float = 0.0
    aux_weight: float = 0.4
    lr_decay_epochs: int | None = None
    devices: int = 1

    def __post_init__(self) -> None:
        """Check the type and range of every value: the first bad one stops with one line."""
        t, opt_int = "trainer.", "null or an integer > 0"
        check([
            (t + "batch_size", self.batch_size, is_int(self.batch_size, 1), "an integer > 0"),
            (t + "max_epochs", self.max_epochs, is_int(self.max_epochs, 1), "an integer > 0"),
            (t + "target_train_acc", self.target_train_acc, in_range(self.target_train_acc, 0, 1, low_open=True),
             "a number in (0, 1]"),
            (t + "stop_at_target", self.stop_at_target, isinstance(self.stop_at_target, bool), "true or false"),
            (t + "patience", self.patience, self.patience is None or is_int(self.patience, 1), opt_int),
            (t + "lr", self.lr, is_number(self.lr) and self.lr > 0, "a finite number > 0"),
            (t + "momentum", self.momentum, in_range(self.momentum, 0, 1, high_open=True), "a number in [0, 1)"),
            (t + "lr_decay", self.lr_decay, in_range(self.lr_decay, 0, 1, low_open=True), "a number in (0, 1]"),
            (t + "lr_decay_period", self.lr_decay_period,
             self.lr_decay_period is None or is_int(self.lr_decay_period, 1), opt_int),
            (t + "eval_batch_size", self.eval_batch_size,
             self.eval_batch_size == "auto" or is_int(self.eval_batch_size, 1), "auto or an integer > 0"),
            (t + "device", self.device, self.device in ("auto", "cpu", "cuda")
             or (isinstance(self.device, str) and self.device.removeprefix("cuda:").isdigit()), "auto, cpu or cuda"),
            (t + "channels_last", self.channels_last,
             self.channels_last == "auto" or isinstance(self.channels_last, bool), "auto, true or false"),
            (t + "amp", self.amp, self.amp == "auto" or isinstance(self.amp, bool), "auto, true or false"),
            (t + "compile", self.compile, isinstance(self.compile, bool), "true or false"),
            (t + "checkpoint_every", self.checkpoint_every,
             self.checkpoint_every is None or is_int(self.checkpoint_every, 0), "null or an integer >= 0"),
            (t + "optimizer", self.optimizer, self.optimizer in OPTIMIZERS, " or ".join(OPTIMIZERS)),
            (t + "rmsprop_decay", self.rmsprop_decay, in_range(self.rmsprop_decay, 0, 1, high_open=True), "a number in [0, 1)"),
            (t + "rmsprop_eps", self.rmsprop_eps, is_number(self.rmsprop_eps) and self.rmsprop_eps > 0, "a number > 0"),
            (t + "label_smoothing", self.label_smoothing, in_range(self.label_smoothing, 0, 1, high_open=True),
             "a number in [0, 1)"),
            (t + "aux_weight", self.aux_weight, is_number(self.aux_weight) and self.aux_weight >= 0, "a number >= 0"),
            (t + "lr_decay_epochs", self.lr_decay_epochs, self.lr_decay_epochs is None or is_int(self.lr_decay_epochs, 1),
             opt_int),
            (t + "devices", self.devices, is_int(self.devices, 1), "an integer >= 1 (ranks of a DDP job)"),
            ("regularizer.weight_decay", self.weight_decay, is_number(self.weight_decay) and self.weight_decay >= 0,
             "a finite number >= 0"),
            ("regularizer.weight_decay_on", self.weight_decay_on, self.weight_decay_on in ("weights", "all"),
             "weights or all"),
            ("regularizer.random_crop", self.random_crop, isinstance(self.random_crop, bool), "true or false"),
            ("regularizer.flip", self.flip, isinstance(self.flip, bool), "true or false"),
            ("regularizer.rotate", self.rotate, in_range(self.rotate, 0, 180), "a number of degrees in [0, 180]"),
            ("dataset.crop_size", self.crop_size, self.crop_size is None or is_int(self.crop_size, 1), opt_int),
            ("seed", self.seed, is_int(self.seed, 0), "an integer >= 0"),
        ])
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise RethinkError(f"trainer.device={self.device} but no CUDA device is available: use auto or cpu")
