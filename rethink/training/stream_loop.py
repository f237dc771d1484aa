"""Training on a streamed data set (`rethink.data.streamed`), on one device or as one rank of a DDP job.

The same protocol as `rethink.training.memory_loop` (SGD or TF's RMSProp, LR decay per period, the stopping rule, checkpoints in
the same format, the same per-epoch metrics), with what ImageNet needs: batches decoded by DataLoader workers,
the training set sharded over the ranks by a DistributedSampler reseeded every epoch (`trainer.batch_size` is the
global batch, split evenly over the ranks), label smoothing and Inception v3's auxiliary loss, and evaluation of
top-1 and top-5 accuracy. Train accuracy (`train/acc`, `train/top5`) is measured in eval mode on a fixed stratified
subset of the training set (`dataset.train_eval_size`, 10,000 images for ImageNet: 10 per class, about 0.3 points
of standard error, for 1/128 of an epoch's cost; a full pass would cost as much as an epoch).
Evaluation is sharded too (rank r takes every r-th image) and the counts are summed, so the metrics are exact.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rethink.corrupt import CorruptedStream
from rethink.data.stream_io import FolderImages, Views, auto_workers, decode_on_device, loader
from rethink.errors import RethinkError, check_stop
from rethink.training import distributed, setup
from rethink.training.preprocess import Preprocess, to_unit
from rethink.training.progress import TrainResult
from rethink.training.runtime import Runtime, full_precision
from rethink.training.schedule import set_lr
from rethink.training.settings import TrainSettings

log = logging.getLogger("rethink")
PROGRESS_LINES = 10  # progress lines per epoch (rank 0) when an epoch has enough steps for them


def inception_scale(x: Tensor) -> Tensor:
    """uint8 -> [-1, 1], as TF's Inception preprocessing ((x / 255 - 0.5) * 2)."""
    return (to_unit(x) - 0.5) * 2.0


def logits_and_aux(out) -> tuple[Tensor, Tensor | None]:
    """The main logits and, for torchvision's Inception v3 in training mode, the auxiliary head's."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


class Batches:
    """Turns the loader's batches into (model-ready float images, global sample indices) on the device."""

    def __init__(self, data: CorruptedStream, s: TrainSettings, pre: Preprocess, rt: Runtime,
                 world: distributed.World) -> None:
        spec = data.data.spec
        self.rt, self.world, self.spec = rt, world, spec
        inception = spec.pipeline == "inception"
        self.views = Views(spec, random_crop=s.random_crop and inception, flip=s.flip and inception)
        self.pre = None if inception else pre  # the fixed pipeline: the paper's crop, flip, rotation on the device
        self.on_device = spec.decode == "device" or (spec.decode == "auto" and rt.on_cuda)
        self.workers = auto_workers(world.size) if spec.workers == "auto" else int(spec.workers)
        channels = int(spec.input_shape[0]) if spec.input_shape is not None else 3
        d = data.data
        self.train_set = FolderImages(d.root, d.train_files, self.views.train_view, channels, raw=self.on_device)
        self.train_eval_set = FolderImages(d.root, d.train_files, self.views.eval_view, channels, raw=self.on_device)
        self.test_set = FolderImages(d.root, d.test_files, self.views.eval_view, channels, raw=self.on_device)

    def ready(self, x, train: bool, gen: torch.Generator | None = None) -> Tensor:
        """A loader batch -> float images in the model's memory format on the device."""
        if self.on_device:
            x = decode_on_device(x, self.views.train_view if train else self.views.eval_view, self.rt.device)
        x = x.to(self.rt.device, non_blocking=True)
        if self.pre is None:
            x = inception_scale(x)
        else:
            x = self.pre.train(x, gen) if train else self.pre.test(x)
        return x.contiguous(memory_format=self.rt.memory_format)

    def shard(self, n: int) -> Tensor:
        """This rank's share of an evaluation set of `n` items: every `size`-th from `rank`."""
        return torch.arange(self.world.rank, n, self.world.size)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, dataset: FolderImages, indices: Tensor, labels: Tensor,
             true_labels: Tensor, changed: Tensor, eval_batch: int) -> Tensor:
    """Summed over the ranks: [top-1 hits, top-5 hits, loss sum, count, top-1 hits / count / true-label hits among
    the changed examples], on `indices` of `dataset` (this rank evaluates its shard of them)."""
    was = model.training
    model.eval()
    counts = torch.zeros(7, dtype=torch.float64, device=labels.device)
    mine = indices[batches.shard(len(indices))]
    for x, idx in loader(dataset, mine, eval_batch, batches.workers, rank=batches.world.rank, pin=batches.rt.on_cuda):
        idx = idx.to(labels.device)
        y = labels[idx]
        with batches.rt.autocast():
            out = full_precision(model(batches.ready(x, train=False)))
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        hit1, hit5, c = top[:, 0] == y, (top == y[:, None]).any(1), changed[idx]
        counts += torch.stack([hit1.sum(), hit5.sum(), F.cross_entropy(out, y, reduction="sum"),
                               torch.tensor(len(y), device=y.device), (hit1 & c).sum(), c.sum(),
                               (top[:, 0] == true_labels[idx])[c].sum()]).to(torch.float64)
    model.train(was)
    return distributed.all_sum(counts)


def epoch_record(epoch: int, step: int, lr: float, running: Tensor, train_c: Tensor, test_c: Tensor, t0: float) -> dict:
    """The epoch's metrics (the keys `rethink.training.memory_loop` logs, plus top-5) from the summed counts."""
    loss_sum, hits, seen = running.tolist()
    tr, te = train_c.tolist(), test_c.tolist()
    stats = {"epoch": epoch, "step": step, "lr": lr, "train/loss": loss_sum / seen, "train/running_acc": hits / seen,
             "train/acc": tr[0] / tr[3], "train/top5": tr[1] / tr[3], "train/eval_loss": tr[2] / tr[3],
             "test/loss": te[2] / te[3], "test/acc": te[0] / te[3], "test/top5": te[1] / te[3],
             "epoch_time": time.perf_counter() - t0}
    stats["generalization_gap"] = round(stats["train/acc"] - stats["test/acc"], 12)
    if tr[5] > 0:
        stats["train/acc_corrupted"] = tr[4] / tr[5]
        stats["train/acc_corrupted_true_label"] = tr[6] / tr[5]
    return stats


def train_streamed(model: nn.Module, data: CorruptedStream, s: TrainSettings, rt: Runtime,
                   on_epoch: Callable[[dict], None] | None = None,
                   on_checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None) -> TrainResult:
    """Train `model` on the streamed `data` under settings `s`; see the module doc and `rethink.training.fit`.
    Every rank calls it; only rank 0 is given `on_epoch` / `on_checkpoint`."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    t_start = time.perf_counter()
    w = distributed.world() if distributed.active() else distributed.World()
    if s.batch_size % w.size:
        raise RethinkError(f"trainer.batch_size={s.batch_size} (the global batch) does not split evenly over "
                           f"trainer.devices={w.size} ranks: use a multiple of {w.size}")
    rt.activate()
    per_rank = s.batch_size // w.size
    # this rank's share of the training set each epoch (the sampler needs only its size)
    sampler = DistributedSampler(range(len(data.train_y)), num_replicas=w.size, rank=w.rank, shuffle=True, seed=s.seed)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    loop = setup.start(model, s, rt, steps_per_epoch, resume)
    model, opt, gen, st = loop.model, loop.opt, loop.gen, loop.state
    net = DistributedDataParallel(model, device_ids=[rt.device] if rt.on_cuda else None) if w.size > 1 else model
    b = Batches(data, s, loop.pre, rt, w)
    labels, true_labels = data.train_y.to(rt.device), data.true_train_y.to(rt.device)
    changed, test_y = data.changed.to(rt.device), data.test_y.to(rt.device)
    no_change = torch.zeros(len(test_y), dtype=torch.bool, device=rt.device)
    every = max(1, math.ceil(steps_per_epoch / PROGRESS_LINES)) if steps_per_epoch >= 4 * PROGRESS_LINES else 0
    eval_batch = max(1, min(rt.eval_batch_size, 2 * per_rank))  # full-size images: about the training batch's memory
    for epoch in range(st.epoch + 1, s.max_epochs + 1):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        worker_seed = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch)
        net.train()
        running = torch.zeros(3, dtype=torch.float64, device=rt.device)  # loss sum, hits, images
        lr = loop.lr()
        for i, (x, idx) in enumerate(loader(b.train_set, None, per_rank, b.workers, sampler=sampler,
                                            generator=worker_seed, rank=w.rank, pin=rt.on_cuda)):
            lr = loop.lr()
            set_lr(opt, lr)
            y = labels[idx.to(rt.device)]
            with rt.autocast():
                logits, aux = logits_and_aux(net(b.ready(x, train=True, gen=gen)))
            logits = full_precision(logits)
            loss = F.cross_entropy(logits, y, label_smoothing=s.label_smoothing)
            if aux is not None and s.aux_weight:
                loss = loss + s.aux_weight * F.cross_entropy(full_precision(aux), y, label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += torch.stack([loss.detach().double() * len(y), (logits.detach().argmax(1) == y).sum().double(),
                                    torch.tensor(float(len(y)), dtype=torch.float64, device=rt.device)])
            st.step += 1
            check_stop()  # a SIGTERM / Ctrl-C that arrived while a worker was forking
            if every and w.main and (i + 1) % every == 0 and i + 1 < steps_per_epoch:
                done = float(running[2])
                log.info("epoch %d: %3.0f%% (%d/%d steps) loss %.4f, %.0f images/s on rank 0", epoch,
                         100 * (i + 1) / steps_per_epoch, i + 1, steps_per_epoch, float(running[0]) / done,
                         done / (time.perf_counter() - t0))
        if rt.on_cuda:
            torch.cuda.synchronize()
        st.train_time += time.perf_counter() - t0
        check_stop()
        distributed.all_sum(running)
        distributed.sync_buffers(model)
        train_c = evaluate(model, b, b.train_eval_set, data.data.train_eval, labels, true_labels, changed, eval_batch)
        test_c = evaluate(model, b, b.test_set, torch.arange(len(test_y)), test_y, test_y, no_change, eval_batch)
        check_stop()
        setup.check_finite(float(running[0]), epoch, lr)
        stats = epoch_record(epoch, st.step, lr, running, train_c, test_c, t0)
        for key in ("acc", "top5"):  # the best test accuracy so far (Table 2's parentheses), a resumed run's included
            stats[f"test/best_{key}"] = max([h[f"test/{key}"] for h in st.result.history] + [stats[f"test/{key}"]])
        if st.close_epoch(epoch, stats, on_epoch):
            break
        if on_checkpoint and loop.checkpoint_due(epoch):
            on_checkpoint(loop.checkpoint())
    return st.finish(t_start, len(labels))
