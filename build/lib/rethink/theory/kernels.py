"""Table 3 (Zhang et al. 2017, Section 5): min-norm Gaussian-kernel interpolation of one-hot labels.

Solve K alpha = Y with K_ij = exp(-gamma ||x_i - x_j||^2) and Y one-hot (eq. 3: the interpolant
that SGD from 0 finds in the span of the data), then predict argmax_c K(test, train) alpha[:, c].
K is n x n (14.4 GB in float32 at n = 60k), so: build it blockwise into one preallocated buffer,
factor it once in place (Cholesky: n^3 / 3 flops, half of LU; all 10 classes are just 10
right-hand sides), and score the test set in chunks of rows so K(test, train) never exists whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

MNIST_GAMMA = 0.02  # the authors' reference value for MNIST pixels scaled to [0, 1]

Array = np.ndarray | torch.Tensor


def scale_and_flatten(images: Array) -> torch.Tensor:
    """Raw-pixel features for MNIST (N,28,28) or CIFAR-10 (N,3,32,32)/(N,32,32,3): x / 255 flattened.

    The layout does not matter for an RBF kernel: ||x - z|| is invariant to a fixed permutation
    of the coordinates, so NCHW and NHWC give the same kernel.
    """
    images = torch.as_tensor(images)
    return images.reshape(images.shape[0], -1).to(torch.float32) / 255.0


def one_hot(labels: Array, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot targets Y (n, num_classes), the right-hand sides of K alpha = Y."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return F.one_hot(labels, num_classes).to(dtype)


def median_heuristic_gamma(x: Array, num_pairs: int = 20000, seed: int = 0) -> float:
    """gamma = 1 / median ||x_i - x_j||^2 over random pairs: puts typical kernel values near exp(-1).

    Used for CIFAR-10 (raw and random-conv features), where the paper gives no gamma.
    """
    x = torch.as_tensor(x)
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, x.shape[0], (num_pairs,), generator=gen)
    j = torch.randint(0, x.shape[0], (num_pairs,), generator=gen)
    keep = i != j
    i, j = i[keep].to(x.device), j[keep].to(x.device)
    d2 = torch.cat(
        [  # pairs in groups of 256 rows: wide features (1e5 dims) would not fit otherwise
            (x[i[s : s + 256]].double() - x[j[s : s + 256]].double()).pow(2).sum(1)
            for s in range(0, i.numel(), 256)
        ]
    )
    return float(1.0 / d2.median())


def rbf_kernel_blockwise(
    x: Array, z: Array, gamma: float, block: int = 2048, out: torch.Tensor | None = None
) -> torch.Tensor:
    """K_ij = exp(-gamma ||x_i - z_j||^2) via ||x||^2 + ||z||^2 - 2 x.z (one GEMM per row block), in place.

    Row blocks bound the temporaries to the norms; `out` may be a torch view of a numpy buffer
    (torch.from_numpy) so a CPU Cholesky can then factor the same memory in place.
    """
    x = torch.as_tensor(x)
    z = torch.as_tensor(z).to(dtype=x.dtype, device=x.device)
    n, m = x.shape[0], z.shape[0]
    if out is None:
        out = torch.empty((n, m), dtype=x.dtype, device=x.device)
    if tuple(out.shape) != (n, m) or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must be a {x.dtype} tensor of shape {(n, m)} on {x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    z_sq = z.pow(2).sum(1)
    for start in range(0, n, block):
        xb = x[start : start + block]
        ob = out[start : start + block]
        torch.matmul(xb, z.T, out=ob)
        ob.mul_(-2.0).add_(xb.pow(2).sum(1, keepdim=True)).add_(z_sq)
        ob.clamp_(min=0.0).mul_(-gamma).exp_()  # clamp: rounding can make a squared distance < 0
    return out


def rbf_gram_upper_blockwise(
    x: Array, gamma: float, block: int = 2048, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Gram matrix K(x, x) filled only on and above the diagonal blocks (the rest is left as is).

    A Cholesky reads one triangle, so building the other costs GEMM and exp work for nothing:
    for row block [s, e) only columns [s, n) are computed (about half the flops of a full build).
    """
    x = torch.as_tensor(x)
    n = x.shape[0]
    if out is None:
        out = torch.empty((n, n), dtype=x.dtype, device=x.device)
    for start in range(0, n, block):
        rbf_kernel_blockwise(
            x[start : start + block],
            x[start:],
            gamma,
            block=block,
            out=out[start : start + block, start:],
        )
    return out


@dataclass
class KernelFit:
    """Solution alpha of (K + jitter I) alpha = Y, with what it cost and its RKHS norm."""

    alpha: torch.Tensor  # (n, num_classes), float dtype of the solve, on the solve's device
    gamma: float
    jitter: float  # diagonal shift that made the Cholesky succeed (0.0: none needed)
    attempts: int  # factorizations tried
    # wall seconds: kernel build and factorization (scipy: last try; torch: all tries), solve, total
    seconds: dict[str, float] = field(default_factory=dict)
    rkhs_norm: float = float("nan")
    rkhs_norm_per_class: list[float] = field(default_factory=list)


def rkhs_norms(
    alpha: torch.Tensor, y: torch.Tensor, jitter: float = 0.0
) -> tuple[float, list[float]]:
    """RKHS norm of f_c = sum_i alpha_ic k(x_i, .) per class and of f = (f_1..f_C) in total.

    ||f_c||^2 = alpha_c^T K alpha_c. Since the fit solves (K + jitter I) alpha = Y, K alpha_c =
    y_c - jitter alpha_c, hence ||f_c||^2 = alpha_c^T y_c - jitter ||alpha_c||^2: no n x n product
    is needed. The total is sqrt(trace(alpha^T K alpha)) = sqrt(sum(alpha * Y) - jitter ||alpha||_F^2).
    With a float32 solve this equals alpha^T K alpha only up to alpha^T (residual).
    """
    a = alpha.double()
    sq = (a * y.to(a)).sum(0) - jitter * a.pow(2).sum(0)
    per_class = sq.clamp(min=0).sqrt().tolist()
    return float(sq.sum().clamp(min=0).sqrt()), per_class


def next_jitter(jitter: float, dtype: torch.dtype) -> float:
    """Diagonal shift for the next try: 10 eps of the dtype (K_ii = 1 sets the scale), then x10."""
    return 10 * torch.finfo(dtype).eps if jitter == 0 else jitter * 10


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fit_scipy(
    x: torch.Tensor, y: torch.Tensor, gamma: float, jitter: float, max_tries: int, block: int
) -> tuple[torch.Tensor, float, int, dict]:
    """CPU: K in one numpy buffer, scipy cho_factor(overwrite_a=True) factors it with no copy."""
    n = x.shape[0]
    buf = np.empty((n, n), dtype=torch.empty((), dtype=x.dtype).numpy().dtype)
    # K is symmetric, so buf.T (Fortran order, same memory) is K too: LAPACK then works in place.
    # Its lower triangle is buf's upper one, the only part that is built and read.
    for attempt in range(1, max_tries + 1):
        t0 = time.perf_counter()
        rbf_gram_upper_blockwise(x, gamma, block=block, out=torch.from_numpy(buf))
        if jitter:
            buf.flat[:: n + 1] += jitter
        t1 = time.perf_counter()
        try:
            factor = scipy.linalg.cho_factor(
                buf.T, lower=True, overwrite_a=True, check_finite=False
            )
        except np.linalg.LinAlgError:  # not positive definite in this precision: shift the diagonal
            if attempt == max_tries:
                raise
            jitter = next_jitter(jitter, x.dtype)
            continue
        t2 = time.perf_counter()
        alpha = scipy.linalg.cho_solve(factor, y.numpy().astype(buf.dtype), check_finite=False)
        t3 = time.perf_counter()
        return (
            torch.from_numpy(alpha),
            jitter,
            attempt,
            {"kernel": t1 - t0, "factor": t2 - t1, "solve": t3 - t2},
        )
    raise AssertionError("unreachable")


def _fit_torch(
    x: torch.Tensor, y: torch.Tensor, gamma: float, jitter: float, max_tries: int, block: int
) -> tuple[torch.Tensor, float, int, dict]:
    """GPU (or forced CPU): torch.linalg.cholesky_ex; it returns a copy, so this needs 2 n^2 memory."""
    dev = x.device
    t0 = time.perf_counter()
    k = rbf_kernel_blockwise(x, x, gamma, block=block)
    if jitter:
        k.diagonal().add_(jitter)
    _sync(dev)
    t1 = time.perf_counter()
    for attempt in range(1, max_tries + 1):
        chol, info = torch.linalg.cholesky_ex(k)
        if int(info) == 0:
            break
        if attempt == max_tries:
            raise torch.linalg.LinAlgError(
                f"kernel matrix not positive definite even with jitter {jitter:g} (info={int(info)})"
            )
        chol = None  # free it before the next try: peak memory stays 2 n^2
        new = next_jitter(jitter, x.dtype)
        k.diagonal().add_(new - jitter)  # K itself is intact: cholesky_ex wrote a new tensor
        jitter = new
    del k
    _sync(dev)
    t2 = time.perf_counter()
    alpha = torch.cholesky_solve(y.to(device=dev, dtype=x.dtype), chol)
    _sync(dev)
    t3 = time.perf_counter()
    return alpha, jitter, attempt, {"kernel": t1 - t0, "factor": t2 - t1, "solve": t3 - t2}


def fit_kernel_interpolant(
    x: Array,
    y_onehot: Array,
    gamma: float,
    jitter: float = 0.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    solver: str = "auto",
    max_tries: int = 6,
    block: int = 2048,
) -> KernelFit:
    """Min-norm interpolant alpha = (K + jitter I)^{-1} Y by Cholesky, retrying with a larger jitter if K is not PD.

    solver "auto": scipy in place on CPU (n^2 memory), torch.linalg.cholesky_ex on CUDA (2 n^2);
    "scipy" / "torch" force one (tests use both on CPU). RBF Gram matrices are often numerically
    singular in float32: on failure the diagonal shift grows (10 eps, then x10) and the one used
    is reported in `jitter`.
    """
    device = torch.device(device)
    if solver == "auto":
        solver = "torch" if device.type == "cuda" else "scipy"
    if solver not in ("scipy", "torch"):
        raise ValueError(f"solver must be 'auto', 'scipy' or 'torch', got {solver!r}")
    if solver == "scipy" and device.type != "cpu":
        raise ValueError(f"solver 'scipy' runs on the CPU only, got device {device}")
    x = torch.as_tensor(x).to(device=device, dtype=dtype)
    y = torch.as_tensor(y_onehot)
    start = time.perf_counter()
    fit = _fit_scipy if solver == "scipy" else _fit_torch
    alpha, jitter_used, attempts, seconds = fit(x, y.to(device), gamma, jitter, max_tries, block)
    seconds["total"] = time.perf_counter() - start
    total, per_class = rkhs_norms(alpha, y.to(alpha.device), jitter_used)
    return KernelFit(alpha, gamma, jitter_used, attempts, seconds, total, per_class)


def kernel_scores(
    train_x: Array, alpha: Array, test_x: Array, gamma: float, chunk: int = 1024
) -> torch.Tensor:
    """K(test, train) @ alpha, one chunk of test rows at a time (chunk x n memory, never m x n)."""
    alpha = torch.as_tensor(alpha)
    train_x = torch.as_tensor(train_x).to(device=alpha.device, dtype=alpha.dtype)
    test_x = torch.as_tensor(test_x).to(device=alpha.device, dtype=alpha.dtype)
    scores = torch.empty((test_x.shape[0], alpha.shape[1]), dtype=alpha.dtype, device=alpha.device)
    buf = torch.empty(
        (min(chunk, test_x.shape[0]), train_x.shape[0]), dtype=alpha.dtype, device=alpha.device
    )
    for start in range(0, test_x.shape[0], chunk):
        rows = test_x[start : start + chunk]
        k = rbf_kernel_blockwise(rows, train_x, gamma, block=chunk, out=buf[: rows.shape[0]])
        torch.matmul(k, alpha, out=scores[start : start + rows.shape[0]])
    return scores


def predict(
    train_x: Array, alpha: Array, test_x: Array, gamma: float, chunk: int = 1024
) -> torch.Tensor:
    """Predicted class argmax_c [K(test, train) alpha]_c for each test row, computed in chunks."""
    return kernel_scores(train_x, alpha, test_x, gamma, chunk).argmax(1)


def error_rate(predicted: Array, labels: Array) -> float:
    """Fraction of wrong predictions."""
    predicted = torch.as_tensor(predicted).cpu()
    return float((predicted != torch.as_tensor(labels).cpu()).double().mean())
