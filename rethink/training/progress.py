"""What a training run records and carries from epoch to epoch, and how a checkpoint saves it.

`StoppingRule` decides when to stop and remembers where the accuracy thresholds were reached;
`LoopState` is everything the loop carries besides model, optimizer and RNGs; `checkpoint_state`
and `restore_checkpoint` turn both into the checkpoint dict and back (the keys are those of the
files earlier versions wrote, so those still resume).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

log = logging.getLogger(__name__)

FIT_THRESHOLDS = (0.99, 0.999)  # also logged, whatever the target: the paper's 100% is a plateau


@dataclass
class TrainResult:
    """What a finished training run reports."""

    history: list[dict] = field(default_factory=list)
    fit_epoch: int | None = None
    fit_step: int | None = None
    reached: dict = field(default_factory=dict)  # threshold -> (epoch, step)
    stop_reason: str = "max_epochs"
    epochs: int = 0
    steps: int = 0
    wall_time: float = 0.0
    train_time: float = 0.0
    images_per_s: float = 0.0


@dataclass
class StoppingRule:
    """Stop at the target training accuracy (the "fit") or after `patience` epochs without
    improvement; record where each threshold (and the target) was first reached."""

    target: float
    stop_at_target: bool = True
    patience: int | None = None
    thresholds: tuple[float, ...] = FIT_THRESHOLDS
    best_acc: float = -1.0
    best_epoch: int = 0
    fit_epoch: int | None = None
    fit_step: int | None = None
    reached: dict = field(default_factory=dict)  # threshold -> (epoch, step)

    def update(self, epoch: int, step: int, acc: float) -> str | None:
        """Take the training accuracy after `epoch`; return "target", "stall" or None (go on)."""
        for thr in self.thresholds + (self.target,):
            if acc >= thr and thr not in self.reached:
                self.reached[thr] = (epoch, step)
        if acc >= self.target and self.fit_epoch is None:
            self.fit_epoch, self.fit_step = epoch, step
            if self.stop_at_target:
                return "target"
        if acc > self.best_acc + 1e-4:
            self.best_acc, self.best_epoch = acc, epoch
        elif self.patience and epoch - self.best_epoch >= self.patience:
            return "stall"
        return None


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch besides model, optimizer and RNGs."""

    stop: StoppingRule
    result: TrainResult = field(default_factory=TrainResult)  # history and stop_reason so far
    epoch: int = 0  # the last finished epoch
    step: int = 0
    train_time: float = 0.0

    def close_epoch(self, epoch: int, stats: dict, on_epoch: Callable[[dict], None] | None) -> bool:
        """Record epoch `epoch`'s statistics, hand them to `on_epoch`, and apply the stopping rule: True to stop."""
        self.result.history.append(stats)
        self.epoch = epoch
        reason = self.stop.update(epoch, self.step, stats["train/acc"])
        if on_epoch:
            on_epoch(stats)
        if reason:
            self.result.stop_reason = reason
        return reason is not None

    def finish(self, started: float, images: int) -> TrainResult:
        """The result of the training that began at `started` (perf_counter) on `images` training images."""
        res = self.result_so_far()
        res.wall_time = time.perf_counter() - started
        res.train_time = self.train_time
        res.images_per_s = images * res.epochs / max(sum(h["epoch_time"] for h in res.history), 1e-9)
        return res

    def result_so_far(self) -> TrainResult:
        """`result` with the counters and the stopping rule's records filled in."""
        return replace(self.result, epochs=self.epoch, steps=self.step, fit_epoch=self.stop.fit_epoch,
                       fit_step=self.stop.fit_step, reached=self.stop.reached)


def checkpoint_state(st: LoopState, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                     device: torch.device) -> dict:
    """The full training state after epoch `st.epoch`, as `on_checkpoint` gets it."""
    return {
        "epoch": st.epoch, "step": st.step, "best_acc": st.stop.best_acc, "best_epoch": st.stop.best_epoch,
        "train_time": st.train_time,
        "model": model.state_dict(), "optimizer": opt.state_dict(), "gen_state": gen.get_state(),
        "device_type": device.type,
        "cpu_rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "result": asdict(st.result_so_far()),
    }


def restore_checkpoint(ckpt: dict, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                       device: torch.device, stop: StoppingRule) -> LoopState:
    """Load a `checkpoint_state` into model, optimizer and RNGs; the loop state to continue from
    (`stop`, the rule from the settings, gets the checkpoint's best accuracy and records)."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["cpu_rng_state"])
    if ckpt["device_type"] == device.type:
        gen.set_state(ckpt["gen_state"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"], device)
    else:  # a CPU generator's state does not fit a CUDA one: same model, other data order from here
        log.warning("resuming a %s checkpoint on %s: data order differs from an uninterrupted run",
                    ckpt["device_type"], device.type)
    res = TrainResult(**ckpt["result"])
    stop = replace(stop, best_acc=ckpt["best_acc"], best_epoch=ckpt["best_epoch"], fit_epoch=res.fit_epoch,
                   fit_step=res.fit_step, reached=res.reached)
    return LoopState(stop, res, ckpt["epoch"], ckpt["step"], ckpt["train_time"])
