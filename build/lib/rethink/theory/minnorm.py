"""Section 5, linear case: SGD from w = 0 on under-determined least squares finds the min-norm solution.

Every SGD update on 1/2 (<x_i, w> - y_i)^2 adds a multiple of some x_i, so from w = 0 the iterate
stays in the row space of X. The only interpolating solution in that span is pinv(X) @ y, the
minimum-norm one: SGD converges to it without any explicit regularization. Started elsewhere
(w0 != 0) it keeps w0's component in the null space of X and converges to a different interpolant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SGDTrace:
    """Per-epoch record of an SGD run: distance to pinv(X) @ y and training residual."""

    w: np.ndarray
    w_min_norm: np.ndarray
    distance: list[float] = field(default_factory=list)  # ||w - pinv(X) y|| after each epoch
    relative_distance: list[float] = field(default_factory=list)  # distance / ||pinv(X) y||
    residual: list[float] = field(default_factory=list)  # ||X w - y|| after each epoch


def min_norm_solution(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares solution pinv(X) @ y."""
    return np.linalg.pinv(x) @ y


def default_learning_rate(x: np.ndarray, batch_size: int = 1) -> float:
    """A step size that is stable for every example: 1 / max ||x_i||^2 (times the batch size)."""
    return float(batch_size / np.max(np.sum(x * x, axis=1)))


def sgd_least_squares(
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float | None = None,
    seed: int = 0,
    batch_size: int = 1,
    w0: np.ndarray | None = None,
    callback: Callable[[int, np.ndarray, float, float], None] | None = None,
) -> SGDTrace:
    """Plain SGD (no momentum, no decay) on mean-over-batch 1/2 (Xw - y)^2 from w0 (default 0)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    lr = default_learning_rate(x, batch_size) if lr is None else lr
    rng = np.random.default_rng(seed)
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64)
    w_star = min_norm_solution(x, y)
    trace = SGDTrace(w=w, w_min_norm=w_star)
    scale = max(float(np.linalg.norm(w_star)), np.finfo(np.float64).tiny)
    for epoch in range(epochs):
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb = x[idx]
            w -= lr * (xb.T @ (xb @ w - y[idx])) / idx.size
        distance = float(np.linalg.norm(w - w_star))
        residual = float(np.linalg.norm(x @ w - y))
        trace.distance.append(distance)
        trace.relative_distance.append(distance / scale)
        trace.residual.append(residual)
        if callback is not None:
            callback(epoch, w, distance, residual)
    return trace
