"""Class-balanced random subsets: the reduced scale's training and test sets, and the streamed train-accuracy set."""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_subset(labels: Tensor, size: int | None, generator: torch.Generator) -> Tensor:
    """Indices of a class-balanced random subset of `size` examples (all, in order, if None or all).

    Each class gives `balanced_quota` examples: an equal share, except that a class with too few
    gives all it has and the others make up the difference, so the subset always has `size`."""
    if size is None or size >= len(labels):
        return torch.arange(len(labels))
    classes, counts = labels.unique(return_counts=True)
    picks = []
    for c, k in zip(classes.tolist(), balanced_quota(size, counts.tolist()), strict=True):
        idx = (labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:k]])
    return torch.cat(picks).sort().values


def balanced_quota(size: int, counts: list[int]) -> list[int]:
    """How many of each class: `size // k` each (the first `size % k` one more), capped at what a
    class holds, the shortfall shared the same way among the classes that have more."""
    quota, left = [0] * len(counts), min(size, sum(counts))
    while left > 0:
        open_ = [j for j, n in enumerate(counts) if quota[j] < n]
        shares = [left // len(open_) + (i < left % len(open_)) for i in range(len(open_))]
        for j, share in zip(open_, shares, strict=True):
            give = min(share, counts[j] - quota[j])
            quota[j] += give
            left -= give
    return quota


