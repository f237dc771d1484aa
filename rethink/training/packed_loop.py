"""Packed training: several compatible jobs trained together as one stacked model.

The members' parameters and buffers are stacked (`torch.func.stack_module_state`) and one forward
and backward pass runs them all through `torch.func.vmap` (grouped convolutions and batched matmuls
underneath). Each member keeps what a solo run (`rethink.training.memory_loop`) has, from the same setup
(`rethink.training.setup.start`): its own initial weights, data and corruption, data order and augmentation draws
(its own generator, drawn in the solo order), LR schedule, weight decay, momentum, stopping rule, epoch records
and checkpoints, in the solo format (a packed job resumes solo and the other way round). A member that stops
leaves the pack; the others go on. SGD is written out on the stacked tensors with the arithmetic of
`torch.optim.SGD`; what the stacked loop cannot do (`unsupported`) keeps a job out of packs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from rethink.corrupt import CorruptedData
from rethink.errors import DivergenceError, RethinkError, check_stop
from rethink.training import setup
from rethink.training.memory_loop import DeviceData, epoch_statistics, stage_data
from rethink.training.progress import TrainResult
from rethink.training.runtime import Runtime, full_precision, resolve_runtime
from rethink.training.schedule import steps_per_epoch
from rethink.training.settings import TrainSettings


@dataclass
class Member:
    """One job of a pack: what `rethink.training.fit` takes, and `done`, which receives its
    `TrainResult` (or the exception that ended it) when it leaves the pack."""

    model: nn.Module
    data: CorruptedData
    settings: TrainSettings
    on_epoch: Callable[[dict], None] | None = None
    on_checkpoint: Callable[[dict], None] | None = None
    resume: dict | None = None
    done: Callable[[TrainResult | BaseException], None] = lambda result: None
    name: str = ""
    run_id: str = ""


@dataclass
class _Live:
    """A member while it trains: its staged data and its loop (`rethink.training.setup.Loop`)."""

    m: Member
    d: DeviceData
    loop: setup.Loop
    t_start: float = field(default_factory=time.perf_counter)


def unsupported(s: TrainSettings, dropout: float) -> str | None:
    """Why a job with settings `s` (and dropout rate `dropout`) cannot train in a pack, or None if it can. The
    stacked loop implements SGD with momentum on data held on the device, without label smoothing; dropout draws
    (one per member under vmap) would not be the solo run's; `torch.compile` is not applied to the stacked model."""
    reasons = [(s.optimizer != "sgd", f"trainer.optimizer={s.optimizer} (the stacked loop is SGD)"),
               (bool(s.label_smoothing), f"trainer.label_smoothing={s.label_smoothing}"),
               (s.compile, "trainer.compile=true"), (dropout > 0, f"regularizer.dropout={dropout} (random draws)"),
               (s.devices > 1, f"trainer.devices={s.devices}")]
    return next((why for bad, why in reasons if bad), None)


def model_dropout(model: nn.Module) -> float:
    """The largest dropout rate among `model`'s dropout layers (0 without any)."""
    return max((float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)), default=0.0)


def check_compatible(members: list[Member]) -> None:
    """Members must be packable (`unsupported`) and share the architecture (same parameter names and shapes), the
    training set size and the batch size, so that every step stacks one batch of each."""
    for m in members:
        if why := unsupported(m.settings, model_dropout(m.model)):
            raise RethinkError(f"cannot pack {m.name or 'a job'}: {why}; train it alone")
    first = members[0]
    shapes = {n: p.shape for n, p in first.model.named_parameters()}
    for m in members[1:]:
        if {n: p.shape for n, p in m.model.named_parameters()} != shapes or type(m.model) is not type(first.model):
            raise RethinkError(f"cannot pack {m.name or 'a job'} with {first.name or 'the first job'}: other architecture")
        for what, a, b in (("training images", len(m.data.train_y), len(first.data.train_y)),
                           ("test images", len(m.data.test_y), len(first.data.test_y)),
                           ("trainer.batch_size", m.settings.batch_size, first.settings.batch_size)):
            if a != b:
                raise RethinkError(f"cannot pack {m.name or 'a job'} with {first.name or 'the first job'}: {what} {a} != {b}")


def pack_runtime(members: list[Member]) -> Runtime:
    """The first member's runtime, in the contiguous memory format (vmap stacks 5-d batches)."""
    return replace(resolve_runtime(members[0].settings, members[0].model), channels_last=False)


class _Stack:
    """The live members' parameters, buffers and momentum buffers, stacked along a leading member axis."""

    def __init__(self, models: list[nn.Module], opts: list[torch.optim.Optimizer]) -> None:
        params, self.buffers = stack_module_state(models)
        self.params = {n: p.detach().requires_grad_() for n, p in params.items()}
        # torch.optim.SGD starts a momentum buffer as the first update itself: 0.9 * 0 + d == d, exactly.
        self.momentum = {}
        for n, p in self.params.items():
            bufs = [opt.state.get(dict(model.named_parameters())[n], {}).get("momentum_buffer")
                    for model, opt in zip(models, opts, strict=True)]
            self.momentum[n] = torch.stack([torch.zeros_like(p[0]) if b is None else b.detach() for b in bufs])

    def keep(self, rows: list[int]) -> None:
        """Drop every member but those at `rows`."""
        idx = torch.tensor(rows, device=next(iter(self.params.values())).device)
        self.params = {n: p.detach()[idx].requires_grad_() for n, p in self.params.items()}
        self.buffers = {n: b[idx] for n, b in self.buffers.items()}
        self.momentum = {n: b[idx] for n, b in self.momentum.items()}

    def unstack_into(self, row: int, model: nn.Module, opt: torch.optim.Optimizer, stepped: bool) -> None:
        """Write member `row` back into its own model and solo optimizer (for its checkpoint or result)."""
        with torch.no_grad():
            named = dict(model.named_parameters())
            for n, p in self.params.items():
                named[n].copy_(p[row])
                if stepped:
                    opt.state[named[n]]["momentum_buffer"] = self.momentum[n][row].clone()
            for n, b in model.named_buffers():
                b.copy_(self.buffers[n][row])


def _stacked_forward(base: nn.Module) -> Callable[[dict, dict, Tensor], Tensor]:
    """f(params, buffers, x[k, b, ...]) -> logits[k, b, classes], `base`'s train/eval mode as set."""
    def one(p: dict, b: dict, x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (x,))
    return vmap(one, randomness="different")


@torch.inference_mode()
def _evaluate(base: nn.Module, stack: _Stack, xs: Tensor, ys: Tensor, batch: int,
              rt: Runtime) -> list[tuple[Tensor, Tensor]]:
    """Per member: predicted classes and summed loss over its own preprocessed images (eval mode)."""
    base.eval()
    fwd = _stacked_forward(base)
    k, n = ys.shape
    preds, loss = [], torch.zeros(k, device=ys.device)
    for i in range(0, n, batch):
        with rt.autocast():
            out = full_precision(fwd(stack.params, stack.buffers, xs[:, i : i + batch]))
        yb = ys[:, i : i + batch]
        loss += F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape).sum(1)
        preds.append(out.argmax(-1))
    base.train()
    pred = torch.cat(preds, dim=1)
    return [(pred[j], loss[j]) for j in range(k)]


def _decay_mask(base: nn.Module, live: list[_Live], device: torch.device) -> dict[str, Tensor]:
    """Per parameter name, each member's weight decay coefficient (0 where `weights` spares 1-d params)."""
    shapes = {n: p.shape for n, p in base.named_parameters()}
    return {n: torch.tensor([lv.loop.settings.weight_decay if (lv.loop.settings.weight_decay_on == "all" or len(shape) > 1)
                             else 0.0 for lv in live], device=device) for n, shape in shapes.items()}


def _view(v: Tensor, like: Tensor) -> Tensor:
    """A per-member vector shaped to broadcast over a stacked tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def train_pack(members: list[Member], runtime: Runtime | None = None) -> None:
    """Train `members` together until each has stopped; each gets its `TrainResult` through `done` as it leaves.

    An error of one member (a diverged loss) ends that member only; an error of the pack (or Ctrl-C)
    goes to every member still in it and is raised here.
    """
    check_compatible(members)
    rt = runtime or pack_runtime(members)
    rt.activate()
    live: list[_Live] = []
    for m in members:
        loop = setup.start(m.model, m.settings, rt, steps_per_epoch(len(m.data.train_y), m.settings.batch_size), m.resume)
        live.append(_Live(m, stage_data(m.data, loop.pre, rt), loop))
    base = copy.deepcopy(members[0].model).to("meta")
    base.train()
    stack = _Stack([lv.loop.model for lv in live], [lv.loop.opt for lv in live])
    try:
        _loop(base, stack, live, rt)
    except BaseException as e:
        for lv in live:
            lv.m.done(e)
        raise


def _leave(j: int, live: list[_Live], stack: _Stack, error: BaseException | None) -> None:
    """Member `j` is done: its weights go back into its model, its result (or error) to `done`."""
    lv = live[j]
    loop = lv.loop
    stack.unstack_into(j, loop.model, loop.opt, loop.state.step > 0)
    lv.m.done(error if error is not None else loop.state.finish(lv.t_start, len(lv.d.train_y)))
    rows = [i for i in range(len(live)) if i != j]
    del live[j]
    if live:
        stack.keep(rows)


def _loop(base: nn.Module, stack: _Stack, live: list[_Live], rt: Runtime) -> None:
    """Epochs of the whole pack until every member has left it."""
    for j in reversed(range(len(live))):  # resumed past its budget already
        if live[j].loop.state.epoch >= live[j].loop.settings.max_epochs:
            _leave(j, live, stack, None)
    fwd = _stacked_forward(base)
    members_of: tuple[int, ...] = ()
    while live:
        t0 = time.perf_counter()
        k, n, bs = len(live), len(live[0].d.train_y), live[0].loop.settings.batch_size
        if members_of != tuple(map(id, live)):  # the pack changed: restack what stays fixed while it does not
            members_of = tuple(map(id, live))
            wd = _decay_mask(base, live, rt.device)
            momentum = torch.tensor([lv.loop.settings.momentum for lv in live], device=rt.device)
            eval_sets = [(torch.stack([getattr(lv.d, x) for lv in live]), torch.stack([getattr(lv.d, y) for lv in live]))
                         for x, y in (("train_ready", "train_y"), ("test_ready", "test_y"))]
        perms = [torch.randperm(n, device=rt.device, generator=lv.loop.gen) for lv in live]
        loss_sum = torch.zeros(k, device=rt.device)
        hits = torch.zeros(k, device=rt.device, dtype=torch.long)
        lrs = [0.0] * k
        for i in range(0, n, bs):
            check_stop()  # a stop signal whose exception was lost (rethink.errors.check_stop)
            lrs = [lv.loop.lr() for lv in live]
            idx = [p[i : i + bs] for p in perms]
            xb = torch.stack([lv.loop.pre.train(lv.d.train_raw[ix], lv.loop.gen) if lv.loop.pre.augments
                              else lv.d.train_ready[ix] for lv, ix in zip(live, idx, strict=True)])
            yb = torch.stack([lv.d.train_y[ix] for lv, ix in zip(live, idx, strict=True)])
            with rt.autocast():
                out = fwd(stack.params, stack.buffers, xb)
            losses = F.cross_entropy(full_precision(out).flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape).mean(1)
            grads = torch.autograd.grad(losses.sum(), list(stack.params.values()))
            lr = torch.tensor(lrs, device=rt.device)
            with torch.no_grad():
                for (name, p), g in zip(stack.params.items(), grads, strict=True):
                    d_p = g + _view(wd[name], p) * p  # torch.optim.SGD: d_p = grad + weight_decay * p
                    buf = stack.momentum[name]
                    buf.mul_(_view(momentum, buf)).add_(d_p)
                    p.sub_(_view(lr, p) * buf)
            loss_sum += losses.detach() * yb.shape[1]
            hits += (out.detach().argmax(-1) == yb).sum(1)
            for lv in live:
                lv.loop.state.step += 1
        if rt.on_cuda:
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        eb = rt.eval_batch_size
        train_eval, test_eval = (_evaluate(base, stack, xs, ys, eb, rt) for xs, ys in eval_sets)
        running = (loss_sum / n).tolist()
        leaving: list[tuple[int, BaseException | None]] = []
        for j, lv in enumerate(live):
            loop = lv.loop
            st = loop.state
            st.train_time += train_time
            epoch = st.epoch + 1
            try:
                setup.check_finite(running[j], epoch, lrs[j])
            except DivergenceError as e:  # ends this member only
                leaving.append((j, e))
                continue
            stats = epoch_statistics(epoch, st.step, lrs[j], running[j], float(hits[j]) / n, train_eval[j],
                                     test_eval[j], lv.d, t0)
            if st.close_epoch(epoch, stats, lv.m.on_epoch) or epoch >= loop.settings.max_epochs:
                leaving.append((j, None))
            elif lv.m.on_checkpoint and loop.checkpoint_due(epoch):
                stack.unstack_into(j, loop.model, loop.opt, st.step > 0)
                lv.m.on_checkpoint(loop.checkpoint())
        for j, error in reversed(leaving):
            _leave(j, live, stack, error)
