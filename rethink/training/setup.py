"""The one setup every training loop starts from: the model on its device, the optimizer over its parameter
groups, the preprocessing, the augmentation generator (seeded `seed + 1`), the stopping rule and the loop state
(fresh, or restored from a checkpoint), and the LR period. The in-memory, streamed and packed loops all start here,
so a trainer option reaches all of them in the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rethink.errors import DivergenceError
from rethink.training.optim import build_optimizer, param_groups
from rethink.training.preprocess import Preprocess
from rethink.training.progress import LoopState, StoppingRule, checkpoint_state, restore_checkpoint
from rethink.training.runtime import Runtime
from rethink.training.schedule import lr_at, lr_period
from rethink.training.settings import TrainSettings


@dataclass
class Loop:
    """One member's training as a loop carries it: model, optimizer, preprocessing, generator, state, LR period."""

    settings: TrainSettings
    model: nn.Module
    opt: torch.optim.Optimizer
    pre: Preprocess
    gen: torch.Generator
    state: LoopState
    period: int  # steps between two LR decays
    device: torch.device

    def lr(self) -> float:
        """The learning rate of the next step."""
        s = self.settings
        return lr_at(self.state.step, s.lr, s.lr_decay, self.period)

    def checkpoint_due(self, epoch: int) -> bool:
        """Whether epoch `epoch` ends with a checkpoint: every `checkpoint_every` epochs, but not after the last one
        (a finished job needs none)."""
        every = self.settings.checkpoint_every
        return bool(every) and epoch % every == 0 and epoch < self.settings.max_epochs

    def checkpoint(self) -> dict:
        """The full training state now, as `on_checkpoint` gets it (`rethink.training.progress.checkpoint_state`)."""
        return checkpoint_state(self.state, self.model, self.opt, self.gen, self.device)


def start(model: nn.Module, s: TrainSettings, rt: Runtime, steps_per_epoch: int, resume: dict | None) -> Loop:
    """Set up the training of `model` under `s` on `rt`'s device: fresh, or continuing the checkpoint `resume`."""
    model = model.to(rt.device, memory_format=rt.memory_format)
    opt = build_optimizer(s.optimizer, param_groups(model, s.weight_decay, s.weight_decay_on), s.lr, s.momentum,
                          s.rmsprop_decay, s.rmsprop_eps)
    gen = torch.Generator(device=rt.device).manual_seed(s.seed + 1)
    stop = StoppingRule(s.target_train_acc, s.stop_at_target, s.patience)
    state = restore_checkpoint(resume, model, opt, gen, rt.device, stop) if resume else LoopState(stop)
    return Loop(s, model, opt, Preprocess(s.crop_size, s.random_crop, s.flip, s.rotate), gen, state,
                lr_period(s.lr_decay_period, s.lr_decay_epochs, steps_per_epoch), rt.device)


def check_finite(loss: float, epoch: int, lr: float) -> None:
    """Stop a diverged training with one line (`DivergenceError`)."""
    if not math.isfinite(loss):
        raise DivergenceError(f"training diverged: loss is {loss} at epoch {epoch} (lr={lr:.4g})")
