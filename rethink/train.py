"""Device-resident SGD: the data set lives on the device, batches are slices of a per-epoch permutation.

No DataLoader and no per-step host synchronization: loss and accuracy are summed on the device and
read once per epoch. After each epoch the full training set is evaluated in eval mode; training
stops when that accuracy reaches the target (the "fit"), on a stall, or at `max_epochs`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rethink.checks import check, in_range, is_int, is_number
from rethink.corrupt import CorruptedData
from rethink.errors import DivergenceError, RethinkError, check_stop
from rethink.optim import OPTIMIZERS, build_optimizer
from rethink.preprocess import Preprocess
from rethink.progress import (
    LoopState,
    StoppingRule,
    TrainResult,
    checkpoint_state,
    restore_checkpoint,
)
from rethink.runtime import Runtime, full_precision, resolve_runtime


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


def param_groups(model: nn.Module, weight_decay: float, on: str) -> list[dict]:
    """Weight decay on conv/linear kernels only (`weights`) or on every parameter (`all`)."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def lr_at(step: int, base_lr: float, decay: float, period: int) -> float:
    """The learning rate of step `step` (counted from 0): `base_lr` times `decay` per `period` steps."""
    return base_lr * decay ** (step // period)


@dataclass
class DeviceData:
    """The data set on the training device, images preprocessed once for evaluation."""

    train_raw: Tensor
    train_ready: Tensor
    train_y: Tensor
    true_y: Tensor
    changed: Tensor
    test_ready: Tensor
    test_y: Tensor


def stage_data(data: CorruptedData, pre: Preprocess, rt: Runtime) -> DeviceData:
    """Move `data` to the device in the runtime's memory format."""
    train_raw = data.train_x.to(rt.device)
    # Without augmentation the preprocessed images never change: compute them once.
    return DeviceData(train_raw, pre.test_all(train_raw).contiguous(memory_format=rt.memory_format),
                      data.train_y.to(rt.device), data.true_train_y.to(rt.device), data.changed.to(rt.device),
                      pre.test_all(data.test_x.to(rt.device)).contiguous(memory_format=rt.memory_format),
                      data.test_y.to(rt.device))


@torch.inference_mode()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int,
             autocast: Callable[[], contextlib.AbstractContextManager]) -> tuple[Tensor, Tensor]:
    """Per-example predicted class and the summed loss on preprocessed images, in eval mode, batched."""
    was_training = model.training
    model.eval()
    preds, loss = [], torch.zeros((), device=y.device)
    for i in range(0, len(y), batch_size):
        with autocast():
            out = full_precision(model(x[i : i + batch_size]))
        yb = y[i : i + batch_size]
        loss += F.cross_entropy(out, yb, reduction="sum")
        preds.append(out.argmax(1))
    model.train(was_training)
    return torch.cat(preds), loss


def fraction(hits: Tensor) -> float:
    """The share of True in `hits`, exact (count / n): a float32 mean would log 0.4299999713897705
    for 0.43 and could fall just short of the 0.999 target."""
    return int(hits.sum()) / hits.numel()


def epoch_statistics(epoch: int, step: int, lr: float, running_loss: float, running_acc: float,
                     train_eval: tuple[Tensor, Tensor], test_eval: tuple[Tensor, Tensor],
                     d: DeviceData, t0: float) -> dict:
    """The epoch's record from the running sums and the `evaluate` results on both sets;
    `epoch_time` runs from `t0` to after the reads (the host syncs) here."""
    (train_pred, train_loss), (test_pred, test_loss) = train_eval, test_eval
    train_ok, test_ok = train_pred == d.train_y, test_pred == d.test_y
    n, changed = len(d.train_y), d.changed
    stats = {
        "epoch": epoch, "step": step, "lr": lr,
        "train/loss": running_loss,
        "train/running_acc": running_acc,
        "train/acc": fraction(train_ok),
        "train/eval_loss": float(train_loss) / n,
        "test/loss": float(test_loss) / len(d.test_y),
        "test/acc": fraction(test_ok),
        "epoch_time": time.perf_counter() - t0,
    }
    stats["generalization_gap"] = round(stats["train/acc"] - stats["test/acc"], 12)  # no 0.32999999999999996
    if changed.any():
        stats["train/acc_corrupted"] = fraction(train_ok[changed])
        # Arpit et al.: does the net still predict the TRUE class of the examples it was lied to about?
        stats["train/acc_corrupted_true_label"] = fraction(train_pred[changed] == d.true_y[changed])
        if (~changed).any():
            stats["train/acc_clean"] = fraction(train_ok[~changed])
    return stats


def train_epoch(fwd: nn.Module, opt: torch.optim.Optimizer, pre: Preprocess, d: DeviceData,
                gen: torch.Generator, rt: Runtime, s: TrainSettings, step: int,
                period: int) -> tuple[Tensor, Tensor, float, int]:
    """One pass over a fresh permutation: the summed loss and hits (on the device, unread), the
    epoch's last LR and the step count after it."""
    n = len(d.train_y)
    perm = torch.randperm(n, device=rt.device, generator=gen)
    loss_sum = torch.zeros((), device=rt.device)
    hits = torch.zeros((), device=rt.device, dtype=torch.long)
    lr = lr_at(step, s.lr, s.lr_decay, period)
    for i in range(0, n, s.batch_size):
        check_stop()  # a SIGTERM whose exception Python dropped (it landed in a GC callback) still stops the job
        new_lr = lr_at(step, s.lr, s.lr_decay, period)
        if new_lr != lr or i == 0:
            lr = new_lr
            for g in opt.param_groups:
                g["lr"] = lr
        idx = perm[i : i + s.batch_size]
        xb = pre.train(d.train_raw[idx], gen).contiguous(memory_format=rt.memory_format) if pre.augments else d.train_ready[idx]
        yb = d.train_y[idx]
        with rt.autocast():
            out = fwd(xb)
            loss = F.cross_entropy(full_precision(out), yb, label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        hits += (out.detach().argmax(1) == yb).sum()
        step += 1
    return loss_sum, hits, lr, step


def train(model: nn.Module, data: CorruptedData, s: TrainSettings,
          on_epoch: Callable[[dict], None] | None = None,
          on_checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None,
          runtime: Runtime | None = None) -> TrainResult:
    """Train `model` on `data` with SGD + momentum and the paper's x0.95 LR decay; see module doc.

    Every `s.checkpoint_every` epochs `on_checkpoint` gets the full training state (model,
    optimizer, epoch/step, which sets the LR schedule, the RNG states, the history so far);
    `resume` = such a state continues from the epoch after it, as if never interrupted.
    `runtime` defaults to `resolve_runtime(s, model)`. In a job of the packed launcher the training is
    handed to its pack (`rethink.packing`), which returns the same result.
    """
    from rethink import packing
    from rethink.corrupt import CorruptedStream

    if isinstance(data, CorruptedStream):  # a streamed data set (ImageNet): DataLoader workers, DDP ranks
        from rethink.stream_train import train_streamed

        return train_streamed(model, data, s, on_epoch, on_checkpoint, resume, runtime)
    if (pack := packing.current()) is not None:  # a job of the packed launcher: trained with its pack
        from rethink.packed_train import Member

        return pack.join(Member(model, data, s, on_epoch, on_checkpoint, resume))
    t_start = time.perf_counter()
    rt = runtime if runtime is not None else resolve_runtime(s, model)
    rt.activate()
    model = model.to(rt.device, memory_format=rt.memory_format)
    fwd = torch.compile(model) if s.compile else model
    opt = build_optimizer(s.optimizer, param_groups(model, s.weight_decay, s.weight_decay_on), s.lr, s.momentum,
                          s.rmsprop_decay, s.rmsprop_eps)
    pre = Preprocess(s.crop_size, s.random_crop, s.flip, s.rotate)
    gen = torch.Generator(device=rt.device).manual_seed(s.seed + 1)
    d = stage_data(data, pre, rt)
    n = len(d.train_y)
    period = s.lr_decay_period or (s.lr_decay_epochs or 1) * math.ceil(n / s.batch_size)
    stop = StoppingRule(s.target_train_acc, s.stop_at_target, s.patience)
    st = restore_checkpoint(resume, model, opt, gen, rt.device, stop) if resume else LoopState(stop)
    model.train()
    for epoch in range(st.epoch + 1, s.max_epochs + 1):
        t0 = time.perf_counter()
        loss_sum, hits, lr, st.step = train_epoch(fwd, opt, pre, d, gen, rt, s, st.step, period)
        if rt.on_cuda:
            torch.cuda.synchronize()
        st.train_time += time.perf_counter() - t0

        train_eval = evaluate(fwd, d.train_ready, d.train_y, rt.eval_batch_size, rt.autocast)
        test_eval = evaluate(fwd, d.test_ready, d.test_y, rt.eval_batch_size, rt.autocast)
        running_loss = float(loss_sum) / n  # the one host sync of the epoch (with the statistics)
        if not math.isfinite(running_loss):
            raise DivergenceError(f"training diverged: loss is {running_loss} at epoch {epoch} (lr={lr:.4g})")
        stats = epoch_statistics(epoch, st.step, lr, running_loss, float(hits) / n, train_eval, test_eval, d, t0)
        if st.close_epoch(epoch, stats, on_epoch):
            break
        if on_checkpoint and s.checkpoint_every and epoch % s.checkpoint_every == 0 and epoch < s.max_epochs:
            on_checkpoint(checkpoint_state(st, model, opt, gen, rt.device))
    return st.finish(t_start, n)
