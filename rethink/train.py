"""Device-resident SGD: the data set lives on the device, batches are slices of a per-epoch permutation.

No DataLoader and no per-step host synchronization: loss and accuracy are summed on the device and
read once per epoch. After each epoch the full training set is evaluated in eval mode; training
stops when that accuracy reaches the target (the "fit"), on a stall, or at `max_epochs`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rethink.corrupt import CorruptedData
from rethink.errors import DivergenceError, RethinkError
from rethink.preprocess import Preprocess
from rethink.runtime import Runtime, resolve_runtime

log = logging.getLogger(__name__)

FIT_THRESHOLDS = (0.99, 0.999)  # also logged, whatever the target: the paper's 100% is a plateau


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
    crop_size: int | None = None
    seed: int = 0
    checkpoint_every: int | None = 5  # epochs between checkpoints (0 / None: never)

    def __post_init__(self) -> None:
        checks = [
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size > 0, "an integer > 0"),
            ("max_epochs", isinstance(self.max_epochs, int) and self.max_epochs > 0, "an integer > 0"),
            ("eval_batch_size", self.eval_batch_size == "auto" or (isinstance(self.eval_batch_size, int) and self.eval_batch_size > 0),
             "auto or an integer > 0"),
            ("target_train_acc", 0 < self.target_train_acc <= 1, "a number in (0, 1]"),
            ("lr", self.lr > 0, "a number > 0"),
            ("momentum", 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("lr_decay", 0 < self.lr_decay <= 1, "a number in (0, 1]"),
            ("lr_decay_period", self.lr_decay_period is None or (isinstance(self.lr_decay_period, int) and self.lr_decay_period > 0), "null or an integer > 0"),
            ("patience", self.patience is None or (isinstance(self.patience, int) and self.patience > 0), "null or an integer > 0"),
            ("checkpoint_every", self.checkpoint_every is None or (isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0), "null or an integer >= 0"),
            ("device", self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:"), "auto, cpu or cuda"),
        ]
        for key, ok, allowed in checks:
            if not ok:
                raise RethinkError(f"trainer.{key}={getattr(self, key)!r} is not allowed: use {allowed}")
        if self.weight_decay < 0 or self.weight_decay_on not in ("weights", "all"):
            raise RethinkError(
                f"regularizer.weight_decay={self.weight_decay!r} / weight_decay_on={self.weight_decay_on!r}: use a number >= 0 and weights|all"
            )
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise RethinkError(f"trainer.device={self.device} but no CUDA device is available: use auto or cpu")


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


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """A checkpoint written by `save_checkpoint`, or None when there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file must not stop the job: it trains from the start instead
        log.warning("ignoring unreadable checkpoint %s: %s", path, e)
        return None


def param_groups(model: nn.Module, weight_decay: float, on: str) -> list[dict]:
    """Weight decay on conv/linear kernels only (`weights`) or on every parameter (`all`)."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


@torch.inference_mode()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, autocast) -> tuple[Tensor, Tensor]:
    """Per-example predicted class and the summed loss on preprocessed images, in eval mode, batched."""
    was_training = model.training
    model.eval()
    preds, loss = [], torch.zeros((), device=y.device)
    for i in range(0, len(y), batch_size):
        with autocast():
            out = model(x[i : i + batch_size]).float()
        yb = y[i : i + batch_size]
        loss += F.cross_entropy(out, yb, reduction="sum")
        preds.append(out.argmax(1))
    model.train(was_training)
    return torch.cat(preds), loss


def train(model: nn.Module, data: CorruptedData, s: TrainSettings,
          on_epoch: Callable[[dict], None] | None = None,
          on_checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None,
          runtime: Runtime | None = None) -> TrainResult:
    """Train `model` on `data` with SGD + momentum and the paper's x0.95 LR decay; see module doc.

    Every `s.checkpoint_every` epochs `on_checkpoint` gets the full training state (model,
    optimizer, epoch/step, which sets the LR schedule, the RNG states, the history so far);
    `resume` = such a state continues from the epoch after it, as if never interrupted.
    `runtime` defaults to `resolve_runtime(s, model)`.
    """
    t_start = time.perf_counter()
    rt = runtime if runtime is not None else resolve_runtime(s, model)
    rt.activate()
    device, on_cuda, mem, eval_batch = rt.device, rt.on_cuda, rt.memory_format, rt.eval_batch_size
    autocast = rt.autocast

    model = model.to(device, memory_format=mem)
    fwd = torch.compile(model) if s.compile else model
    opt = torch.optim.SGD(param_groups(model, s.weight_decay, s.weight_decay_on), lr=s.lr, momentum=s.momentum)
    pre = Preprocess(s.crop_size, s.random_crop, s.flip)
    gen = torch.Generator(device=device).manual_seed(s.seed + 1)

    train_raw = data.train_x.to(device)
    train_y, test_y = data.train_y.to(device), data.test_y.to(device)
    true_y, changed = data.true_train_y.to(device), data.changed.to(device)
    # Without augmentation the preprocessed images never change: compute them once.
    train_ready = pre.test_all(train_raw).contiguous(memory_format=mem)
    test_ready = pre.test_all(data.test_x.to(device)).contiguous(memory_format=mem)

    n = len(train_y)
    steps_per_epoch = math.ceil(n / s.batch_size)
    period = s.lr_decay_period or steps_per_epoch
    res = TrainResult()
    best_acc, best_epoch, step = -1.0, 0, 0
    t_train = 0.0
    start = 1
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["cpu_rng_state"])
        if resume["device_type"] == device.type:
            gen.set_state(resume["gen_state"])
            if on_cuda:
                torch.cuda.set_rng_state(resume["cuda_rng_state"], device)
        else:  # a CPU generator's state does not fit a CUDA one: same model, other data order from here
            log.warning("resuming a %s checkpoint on %s: data order differs from an uninterrupted run",
                        resume["device_type"], device.type)
        res = TrainResult(**resume["result"])
        best_acc, best_epoch, step, t_train = resume["best_acc"], resume["best_epoch"], resume["step"], resume["train_time"]
        start = resume["epoch"] + 1
    model.train()
    for epoch in range(start, s.max_epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device, dtype=torch.long)
        lr = s.lr * s.lr_decay ** (step // period)
        for i in range(0, n, s.batch_size):
            new_lr = s.lr * s.lr_decay ** (step // period)
            if new_lr != lr or i == 0:
                lr = new_lr
                for g in opt.param_groups:
                    g["lr"] = lr
            idx = perm[i : i + s.batch_size]
            xb = pre.train(train_raw[idx], gen).contiguous(memory_format=mem) if pre.augments else train_ready[idx]
            yb = train_y[idx]
            with autocast():
                out = fwd(xb)
                loss = F.cross_entropy(out.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            hits += (out.detach().argmax(1) == yb).sum()
            step += 1
        if on_cuda:
            torch.cuda.synchronize()
        t_train += time.perf_counter() - t0

        train_pred, train_loss = evaluate(fwd, train_ready, train_y, eval_batch, autocast)
        test_pred, test_loss = evaluate(fwd, test_ready, test_y, eval_batch, autocast)
        train_ok, test_ok = train_pred == train_y, test_pred == test_y
        running_loss = float(loss_sum) / n  # the one host sync of the epoch (with the lines below)
        if not math.isfinite(running_loss):
            raise DivergenceError(f"training diverged: loss is {running_loss} at epoch {epoch} (lr={lr:.4g})")
        stats = {
            "epoch": epoch, "step": step, "lr": lr,
            "train/loss": running_loss,
            "train/running_acc": float(hits) / n,
            "train/acc": float(train_ok.float().mean()),
            "train/eval_loss": float(train_loss) / n,
            "test/loss": float(test_loss) / len(test_y),
            "test/acc": float(test_ok.float().mean()),
            "epoch_time": time.perf_counter() - t0,
        }
        stats["generalization_gap"] = stats["train/acc"] - stats["test/acc"]
        if changed.any():
            stats["train/acc_corrupted"] = float(train_ok[changed].float().mean())
            # Arpit et al.: does the net still predict the TRUE class of the examples it was lied to about?
            stats["train/acc_corrupted_true_label"] = float((train_pred[changed] == true_y[changed]).float().mean())
            if (~changed).any():
                stats["train/acc_clean"] = float(train_ok[~changed].float().mean())
        res.history.append(stats)
        res.epochs, res.steps = epoch, step

        acc = stats["train/acc"]
        for thr in FIT_THRESHOLDS + (s.target_train_acc,):
            if acc >= thr and thr not in res.reached:
                res.reached[thr] = (epoch, step)
        if on_epoch:
            on_epoch(stats)
        if acc >= s.target_train_acc and res.fit_epoch is None:
            res.fit_epoch, res.fit_step = epoch, step
            if s.stop_at_target:
                res.stop_reason = "target"
                break
        if acc > best_acc + 1e-4:
            best_acc, best_epoch = acc, epoch
        elif s.patience and epoch - best_epoch >= s.patience:
            res.stop_reason = "stall"
            break
        if on_checkpoint and s.checkpoint_every and epoch % s.checkpoint_every == 0 and epoch < s.max_epochs:
            on_checkpoint({
                "epoch": epoch, "step": step, "best_acc": best_acc, "best_epoch": best_epoch, "train_time": t_train,
                "model": model.state_dict(), "optimizer": opt.state_dict(), "gen_state": gen.get_state(),
                "device_type": device.type,
                "cpu_rng_state": torch.get_rng_state(),
                "cuda_rng_state": torch.cuda.get_rng_state(device) if on_cuda else None,
                "result": asdict(res),
            })
    res.wall_time = time.perf_counter() - t_start
    res.train_time = t_train
    res.images_per_s = n * res.epochs / max(sum(h["epoch_time"] for h in res.history), 1e-9)
    return res

