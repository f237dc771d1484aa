"""Evaluation helpers shared by the measures: eval mode that is put back, batched logits,
correct counts and a seeded subsample, none of which touches the caller's RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode, and each module back in its own train/eval mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the batches are moved there); CPU for a parameterless one."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def batches(x: Tensor, y: Tensor | None, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """`x` (and `y`) in consecutive slices of at most `batch_size` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size], None if y is None else y[start:start + batch_size]


def logits(model: nn.Module, x: Tensor, batch_size: int = 64) -> Tensor:
    """The eval-mode outputs f(x) [N, classes] on the CPU, computed batch by batch without autograd."""
    device = device_of(model)
    with eval_mode(model), torch.inference_mode():
        return torch.cat([model(xb.to(device)).float().cpu() for xb, _ in batches(x, None, batch_size)])


def correct_count(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64) -> int:
    """How many of (x, y) the eval-mode model classifies correctly (argmax of the outputs)."""
    device = device_of(model)
    correct = 0
    with eval_mode(model), torch.inference_mode():
        for xb, yb in batches(x, y, batch_size):
            correct += int((model(xb.to(device)).argmax(dim=1) == yb.to(device)).sum())
    return correct


def subsample(x: Tensor, y: Tensor, n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """`n` examples of (x, y) drawn without replacement by `seed` (a local generator), in their
    original order; all of them, as given, when `n` is None or not smaller than len(x)."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("no examples given")
    if n is None or n >= len(x):
        return x, y
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(x), generator=gen)[:n].sort().values
    return x[index], y[index]
