"""Theorem 1 (Zhang et al. 2017, Section 4): a two-layer ReLU net with 2n + d weights fits any n labels.

c(x) = sum_j w_j * max(<a, x> - b_j, 0). Pick a random Gaussian direction a, project the n points
onto it, sort the projections p_1 < ... < p_n, put one bias b_j just below each p_j (b_1 < p_1,
b_j in (p_{j-1}, p_j)). Then A_ij = max(p_i - b_j, 0) is lower triangular with a positive
diagonal and A w = y is solved by forward substitution. For j <= i, A_ij = p_i - b_j, so row i
of A w is p_i * S_i - T_i with the prefix sums S = cumsum(w), T = cumsum(w * b): the solve and
the evaluation are O(n) and the n x n matrix is never formed.

The weights grow like 1 / (smallest gap between projections), so the construction needs float64;
`dtype=np.float32` is there to show that it breaks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg


@dataclass
class TwoLayerReLU:
    """The fitted network: first layer a (one unit direction), biases b (sorted), output weights w."""

    a: np.ndarray  # (d,) the single first-layer direction shared by all n hidden units
    b: np.ndarray  # (n,) hidden-unit biases, strictly increasing
    w: np.ndarray  # (n,) output weights, in the order of b
    order: np.ndarray  # (n,) indices that sort the training projections: p[order] is increasing

    @property
    def num_weights(self) -> int:
        """Number of parameters, d + n + n, the count Theorem 1 promises."""
        return int(self.a.size + self.b.size + self.w.size)

    def project(self, x: np.ndarray) -> np.ndarray:
        """First-layer pre-activation <a, x> for each row of x, in the network's dtype."""
        return np.asarray(x, dtype=self.a.dtype) @ self.a

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Network output c(x) for each row of x, via the stable prefix-sum evaluation."""
        return evaluate_prefix(self, x)


def random_direction(d: int, seed: int, dtype: np.dtype = np.float64) -> np.ndarray:
    """Gaussian direction a in R^d; with probability 1 it separates distinct points."""
    return np.random.default_rng(seed).standard_normal(d).astype(dtype)


def sorted_gaps(p_sorted: np.ndarray) -> np.ndarray:
    """Differences between consecutive sorted projections (their minimum sets the weight scale)."""
    return np.diff(p_sorted)


def check_distinct(p_sorted: np.ndarray) -> None:
    """Raise ValueError if two projections coincide, since then no bias fits between them."""
    gaps = sorted_gaps(p_sorted)
    ties = int(np.count_nonzero(gaps <= 0))
    if ties:
        i = int(np.argmax(gaps <= 0))
        raise ValueError(
            f"{ties} pair(s) of points have equal projections <a, x> in {p_sorted.dtype} "
            f"(first: {p_sorted[i]!r} == {p_sorted[i + 1]!r}); Theorem 1 needs distinct "
            "projections: use float64, another seed, or remove duplicate points"
        )


def choose_biases(p_sorted: np.ndarray) -> np.ndarray:
    """Biases at midpoints b_j = (p_{j-1} + p_j) / 2 and b_1 = p_1 - (p_2 - p_1) / 2 (or p_1 - 1 if n = 1)."""
    b = np.empty_like(p_sorted)
    if p_sorted.size == 0:
        return b
    b[1:] = p_sorted[:-1] + (p_sorted[1:] - p_sorted[:-1]) / 2
    first_gap = p_sorted[1] - p_sorted[0] if p_sorted.size > 1 else p_sorted.dtype.type(2)
    b[0] = p_sorted[0] - first_gap / 2
    return b


def solve_prefix(p_sorted: np.ndarray, b: np.ndarray, y_sorted: np.ndarray) -> np.ndarray:
    """O(n) forward substitution for A w = y with A_ij = max(p_i - b_j, 0), using prefix sums S, T."""
    dtype = p_sorted.dtype.type
    w = np.empty_like(p_sorted)
    s = dtype(0)  # S_{i-1} = sum_{j<i} w_j
    t = dtype(0)  # T_{i-1} = sum_{j<i} w_j * b_j
    # numpy scalars of `dtype` keep every operation in that precision (float32 must really be float32)
    for i in range(p_sorted.size):
        p_i, b_i = p_sorted[i], b[i]
        w_i = (y_sorted[i] - (p_i * s - t)) / (p_i - b_i)
        w[i] = w_i
        s = s + w_i
        t = t + w_i * b_i
    return w


def relu_design_matrix(p_rows: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense A_ij = max(p_i - b_j, 0) (O(n^2) memory: reference and tests only)."""
    return np.maximum(p_rows[:, None] - b[None, :], 0)


def solve_dense(p_sorted: np.ndarray, b: np.ndarray, y_sorted: np.ndarray) -> np.ndarray:
    """Reference solve of the same lower-triangular system with LAPACK (forms the n x n matrix)."""
    a_mat = relu_design_matrix(p_sorted, b)
    return scipy.linalg.solve_triangular(a_mat, y_sorted.astype(a_mat.dtype), lower=True)


def fit_two_layer_relu(
    x: np.ndarray, y: np.ndarray, seed: int = 0, dtype: np.dtype = np.float64
) -> TwoLayerReLU:
    """Build the Theorem 1 network that maps each row x_i exactly to y_i (up to rounding)."""
    x = np.asarray(x, dtype=dtype)
    y = np.asarray(y, dtype=dtype)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
    a = random_direction(x.shape[1], seed, dtype)
    p = x @ a
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    check_distinct(p_sorted)
    b = choose_biases(p_sorted)
    w = solve_prefix(p_sorted, b, y[order])
    return TwoLayerReLU(a=a, b=b, w=w, order=order)


def evaluate_prefix(net: TwoLayerReLU, x: np.ndarray) -> np.ndarray:
    """c(x) = p * S_k - T_k with k = #{j : b_j < p}: O(log n) per point via searchsorted on sorted b."""
    p = net.project(x)
    s = np.concatenate([np.zeros(1, net.w.dtype), np.cumsum(net.w)])
    t = np.concatenate([np.zeros(1, net.w.dtype), np.cumsum(net.w * net.b)])
    k = np.searchsorted(net.b, p, side="left")  # units with b_j < p are active
    return p * s[k] - t[k]


def evaluate_direct(net: TwoLayerReLU, x: np.ndarray, block: int = 256) -> np.ndarray:
    """c(x) as the literal sum over all n hidden units (O(n) per point; suffers cancellation)."""
    p = net.project(x)
    out = np.empty_like(p)
    for start in range(0, p.size, block):
        hidden = np.maximum(p[start : start + block, None] - net.b[None, :], 0)
        out[start : start + block] = hidden @ net.w
    return out


def predict_labels(net: TwoLayerReLU, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer label prediction round(c(x)) clipped to [0, num_classes - 1]."""
    out = evaluate_prefix(net, x)
    out = np.nan_to_num(out, nan=0.0, posinf=num_classes - 1, neginf=0.0)
    return np.clip(np.rint(out), 0, num_classes - 1).astype(np.int64)


def classification_accuracy(
    net: TwoLayerReLU, x: np.ndarray, labels: np.ndarray, num_classes: int
) -> float:
    """Fraction of rows whose rounded, clipped output equals the integer label."""
    return float(np.mean(predict_labels(net, x, num_classes) == np.asarray(labels)))


def theorem1_report(
    x: np.ndarray, y: np.ndarray, seed: int = 0, dtype: np.dtype = np.float64
) -> dict:
    """Fit on (x, y) and report size, conditioning (min gap, max |w|), fit time and both fit errors."""
    start = time.perf_counter()
    net = fit_two_layer_relu(x, y, seed=seed, dtype=dtype)
    fit_seconds = time.perf_counter() - start
    y64 = np.asarray(y, dtype=np.float64)
    p_sorted = np.sort(net.project(x))
    return {
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "num_weights": net.num_weights,
        "dtype": np.dtype(dtype).name,
        "min_gap": float(sorted_gaps(p_sorted).min()) if p_sorted.size > 1 else float("inf"),
        "max_abs_w": float(np.abs(net.w).max()),
        "max_abs_error_prefix": float(np.max(np.abs(evaluate_prefix(net, x) - y64))),
        "max_abs_error_direct": float(np.max(np.abs(evaluate_direct(net, x) - y64))),
        "fit_seconds": fit_seconds,
    }
