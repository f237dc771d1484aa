"""Training on a data set held on the device: batches are slices of a per-epoch permutation.

No DataLoader and no per-step host synchronization: loss and accuracy are summed on the device and
read once per epoch. After each epoch the full training set is evaluated in eval mode; training
stops when that accuracy reaches the target (the "fit"), on a stall, or at `max_epochs`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rethink.corrupt import CorruptedData
from rethink.errors import check_stop
from rethink.training import setup
from rethink.training.preprocess import Preprocess
from rethink.training.progress import TrainResult
from rethink.training.runtime import Runtime, full_precision
from rethink.training.schedule import set_lr, steps_per_epoch
from rethink.training.settings import TrainSettings


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


def train_epoch(fwd: nn.Module, loop: setup.Loop, d: DeviceData, rt: Runtime) -> tuple[Tensor, Tensor, float]:
    """One pass over a fresh permutation: the summed loss and hits (on the device, unread) and the epoch's last LR;
    `loop.state.step` counts the steps."""
    s, st, pre, gen = loop.settings, loop.state, loop.pre, loop.gen
    n = len(d.train_y)
    perm = torch.randperm(n, device=rt.device, generator=gen)
    loss_sum = torch.zeros((), device=rt.device)
    hits = torch.zeros((), device=rt.device, dtype=torch.long)
    lr = None
    for i in range(0, n, s.batch_size):
        check_stop()  # a SIGTERM whose exception Python dropped (it landed in a GC callback) still stops the job
        if (new_lr := loop.lr()) != lr:
            lr = new_lr
            set_lr(loop.opt, lr)
        idx = perm[i : i + s.batch_size]
        xb = pre.train(d.train_raw[idx], gen).contiguous(memory_format=rt.memory_format) if pre.augments else d.train_ready[idx]
        yb = d.train_y[idx]
        with rt.autocast():
            out = fwd(xb)
            loss = F.cross_entropy(full_precision(out), yb, label_smoothing=s.label_smoothing)
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        loop.opt.step()
        loss_sum += loss.detach() * len(idx)
        hits += (out.detach().argmax(1) == yb).sum()
        st.step += 1
    return loss_sum, hits, lr if lr is not None else loop.lr()


def train_in_memory(model: nn.Module, data: CorruptedData, s: TrainSettings, rt: Runtime,
                    on_epoch: Callable[[dict], None] | None = None,
                    on_checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None) -> TrainResult:
    """Train `model` on `data` held on `rt`'s device; see the module doc and `rethink.training.fit`."""
    t_start = time.perf_counter()
    rt.activate()
    n = len(data.train_y)
    loop = setup.start(model, s, rt, steps_per_epoch(n, s.batch_size), resume)
    fwd = torch.compile(loop.model) if s.compile else loop.model
    d = stage_data(data, loop.pre, rt)
    st = loop.state
    loop.model.train()
    for epoch in range(st.epoch + 1, s.max_epochs + 1):
        t0 = time.perf_counter()
        loss_sum, hits, lr = train_epoch(fwd, loop, d, rt)
        if rt.on_cuda:
            torch.cuda.synchronize()
        st.train_time += time.perf_counter() - t0

        train_eval = evaluate(fwd, d.train_ready, d.train_y, rt.eval_batch_size, rt.autocast)
        test_eval = evaluate(fwd, d.test_ready, d.test_y, rt.eval_batch_size, rt.autocast)
        running_loss = float(loss_sum) / n  # the one host sync of the epoch (with the statistics)
        setup.check_finite(running_loss, epoch, lr)
        stats = epoch_statistics(epoch, st.step, lr, running_loss, float(hits) / n, train_eval, test_eval, d, t0)
        if st.close_epoch(epoch, stats, on_epoch):
            break
        if on_checkpoint and loop.checkpoint_due(epoch):
            on_checkpoint(loop.checkpoint())
    return st.finish(t_start, n)
