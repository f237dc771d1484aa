"""The three theory tasks as runners for rethink.theory.jobs: Theorem 1, kernel Table 3, min-norm SGD.

A runner takes the composed config and the task's options (typed, or the dict `validate` returns),
loads and checks its data (no MLflow run exists yet), and returns `compute`, which does the work
and returns an Outcome, with what the job records before it runs (n, d, device).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rethink.errors import RethinkError
from rethink.theory.options import NUM_CLASSES, ExpressivityOptions, KernelOptions, MinnormOptions

log = logging.getLogger("rethink")

TRAIN_ERROR_POINTS = 2000  # kernel: training error is measured on the first this many training points
CIFAR_GAMMA_SCALE = {"raw": 4.0, "random_conv": 0.5}  # x 1/median, chosen on held-out train images
GABOR_GAMMA_SCALE = 1.0  # x 1/median for MNIST Gabor features: the plain median heuristic, not tuned

Runner = Callable[[DictConfig, Mapping[str, Any]], tuple[Callable[[], "Outcome"], dict]]


@dataclass
class Outcome:
    """What a theory job computed: final metrics, per-step metrics, a JSON artifact, figures."""

    metrics: dict[str, float]
    results: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)  # metric -> values at steps 0, 1, ...
    figures: dict[str, Any] = field(default_factory=dict)


# --- data ---


def data_root(cfg: DictConfig) -> tuple[str, bool]:
    """The data root (dataset.root, else paths.data: $RETHINK_DATA or ./data) and whether downloads are allowed."""
    if OmegaConf.select(cfg, "dataset.name") in ("cifar10", "mnist"):
        return str(cfg.dataset.root), bool(cfg.dataset.download)
    return str(cfg.paths.data), True  # an imagefolder root holds neither data set


def load_images(cfg: DictConfig, opts: ExpressivityOptions | KernelOptions):
    """The stratified train/test subsets of CIFAR-10 or MNIST as uint8 NCHW tensors (subset seed 0)."""
    from rethink.data.memory import DatasetSpec

    root, download = data_root(cfg)
    spec = DatasetSpec(name=opts.data, root=root, download=download, train_size=opts.train_size,
                       test_size=opts.test_size, subset_seed=0, num_classes=NUM_CLASSES,
                       input_shape=(3, 32, 32) if opts.data == "cifar10" else (1, 28, 28))
    return spec.load()


def flat_pixels(images: torch.Tensor, dtype: str) -> np.ndarray:
    """x / 255 flattened, as numpy in `dtype` (the same float32 path as bench/theory_measure.py)."""
    from rethink.theory.kernels import scale_and_flatten

    return scale_and_flatten(images).numpy().astype(dtype)


def random_targets(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, NUM_CLASSES, n) if kind == "random_labels" else rng.standard_normal(n)


# --- the three tasks ---
def expressivity(cfg: DictConfig, opts: ExpressivityOptions | Mapping[str, Any]) -> tuple[Callable[[], Outcome], dict]:
    """Theorem 1: fit the 2n + d weight ReLU net to the training targets; evaluate it both ways."""
    from rethink.theory import expressivity as ex

    opts = ExpressivityOptions.of(opts)

    seed, dtype = opts.seed, opts.dtype
    if opts.data == "gaussian":
        n = opts.train_size or 1000
        x = np.random.default_rng([seed, 1]).standard_normal((n, opts.dim)).astype(dtype)
        x_test = y_test = true = None
    else:
        data = load_images(cfg, opts)
        x, x_test = flat_pixels(data.train_x, dtype), flat_pixels(data.test_x, dtype)
        true, y_test = data.train_y.numpy(), data.test_y.numpy()
    n, d = x.shape
    labels = true if opts.targets == "true_labels" else random_targets(opts.targets, n, seed)
    y = labels.astype(np.float64)

    def compute() -> Outcome:
        t0 = time.perf_counter()
        try:
            net = ex.fit_two_layer_relu(x, y, seed=seed, dtype=np.dtype(dtype))
        except ValueError as e:  # ties between projections (float32 at large n): the construction fails
            raise RethinkError(f"Theorem 1 construction failed: {e}") from None
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        out_prefix, out_direct = ex.evaluate_prefix(net, x), ex.evaluate_direct(net, x)
        eval_seconds = time.perf_counter() - t0
        p_sorted = np.sort(net.project(x))
        m = {"n": n, "d": d, "num_weights": net.num_weights,
             "max_abs_error_prefix": float(np.max(np.abs(out_prefix.astype(np.float64) - y))),
             "max_abs_error_direct": float(np.max(np.abs(out_direct.astype(np.float64) - y))),
             "min_gap": float(np.diff(p_sorted).min()) if n > 1 else float("inf"),
             "max_abs_weight": float(np.abs(net.w).max()), "fit_seconds": fit_seconds, "eval_seconds": eval_seconds}
        if opts.targets != "random_reals":
            rounded = lambda out: np.clip(np.rint(np.nan_to_num(out)), 0, NUM_CLASSES - 1)  # noqa: E731
            m |= {"train_accuracy": float(np.mean(rounded(out_prefix) == labels)),
                  "train_accuracy_direct": float(np.mean(rounded(out_direct) == labels))}
        if x_test is not None:  # predictions on unseen images, against their true labels
            pred = ex.predict_labels(net, x_test, NUM_CLASSES)
            m |= {"test_accuracy": float(np.mean(pred == y_test)), "test_n": len(y_test),
                  "test_output_abs_median": float(np.median(np.abs(ex.evaluate_prefix(net, x_test))))}
            results = {"test_prediction_histogram": np.bincount(pred, minlength=NUM_CLASSES).tolist()}
        else:
            results = {}
        log.info("Theorem 1: n=%d, d=%d, %d weights, max |c(x)-y| %.2e (prefix) / %.2e (direct), min gap %.2e, "
                 "max |w| %.2e, fit %.2fs%s", n, d, net.num_weights, m["max_abs_error_prefix"],
                 m["max_abs_error_direct"], m["min_gap"], m["max_abs_weight"], fit_seconds,
                 f", train acc {m['train_accuracy']:.4f}" if "train_accuracy" in m else "")
        return Outcome(m, results)

    return compute, {"n": n, "d": d, "device": "cpu"}


def kernel_device(opts: KernelOptions) -> torch.device:
    if opts.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(opts.device)


def available_bytes(device: torch.device) -> int | None:
    """Free memory where K will live: MemAvailable (CPU) or free GPU memory; None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Limit torch and BLAS (scipy's Cholesky) to `threads` CPU threads for the block (None: as is)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: only torch is limited
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=threads, user_api="blas"):
                yield
    finally:
        torch.set_num_threads(before)


def kernel(cfg: DictConfig, opts: KernelOptions | Mapping[str, Any]) -> tuple[Callable[[], Outcome], dict]:
    """Table 3: min-norm RBF interpolation of one-hot labels by Cholesky, test error, RKHS norm."""
    from rethink.theory import features as ft
    from rethink.theory import kernels as kr

    opts = KernelOptions.of(opts)

    seed, device = opts.seed, kernel_device(opts)
    dtype = torch.float64 if opts.dtype == "float64" else torch.float32
    data = load_images(cfg, opts)
    n = len(data.train_y)
    need = n * n * dtype.itemsize * (2 if device.type == "cuda" else 1)  # scipy factors in place; torch copies
    free = available_bytes(device)
    if free is not None and need > free:
        raise RethinkError(
            f"task.train_size={'null' if opts.train_size is None else opts.train_size} (n={n}) needs {need / 2**30:.1f} GiB for the {opts.dtype} kernel "
            f"matrix on {device} but only {free / 2**30:.1f} GiB is free: use a smaller task.train_size, "
            "task.dtype=float32, or a machine with more memory")
    labels = data.train_y if opts.targets == "true_labels" else torch.from_numpy(random_targets("random_labels", n, seed))

    def compute() -> Outcome:
        with cpu_threads(opts.threads):
            t0 = time.perf_counter()
            if opts.features == "raw":
                xtr, xte = kr.scale_and_flatten(data.train_x), kr.scale_and_flatten(data.test_x)
            elif opts.features == "gabor":
                xtr, xte = ft.standardize_features(ft.gabor_features(data.train_x), ft.gabor_features(data.test_x))
            else:
                filt = ft.random_filters(opts.num_filters, opts.kernel_size, seed)
                xtr, xte = (ft.random_conv_features(x, filters=filt, pool=opts.pool, device=device)
                            for x in (data.train_x, data.test_x))
                xtr, xte = ft.standardize_features(xtr, xte)
            feature_seconds = time.perf_counter() - t0
            m: dict[str, float] = {}
            gamma = opts.gamma
            if gamma is None and opts.features == "gabor":
                m["median_gamma"] = kr.median_heuristic_gamma(xtr, seed=seed)
                gamma = GABOR_GAMMA_SCALE * m["median_gamma"]
            elif gamma is None and opts.data == "mnist":
                gamma = kr.MNIST_GAMMA
            elif gamma is None:
                m["median_gamma"] = kr.median_heuristic_gamma(xtr, seed=seed)
                gamma = CIFAR_GAMMA_SCALE[opts.features] * m["median_gamma"]
            log.info("kernel: n=%d, d=%d, gamma=%.4g, %s on %s, K is %.2f GiB", n, xtr.shape[1], gamma,
                     opts.dtype, device, n * n * dtype.itemsize / 2**30)
            fit = kr.fit_kernel_interpolant(xtr, kr.one_hot(labels, NUM_CLASSES), gamma=gamma, jitter=opts.jitter,
                                            device=device, dtype=dtype)
            t0 = time.perf_counter()
            pred = kr.predict(xtr, fit.alpha, xte, gamma, chunk=1000)
            kr._sync(device)
            predict_seconds = time.perf_counter() - t0
            k = min(n, TRAIN_ERROR_POINTS)
            train_error = kr.error_rate(kr.predict(xtr, fit.alpha, xtr[:k], gamma, chunk=1000), labels[:k])
        m |= {"n": n, "d": int(xtr.shape[1]), "test_n": len(data.test_y), "gamma": gamma,
              "test_error": kr.error_rate(pred, data.test_y), "train_error": train_error, "train_error_n": k,
              "rkhs_norm": fit.rkhs_norm, "jitter": fit.jitter, "attempts": fit.attempts,
              "features_seconds": feature_seconds, "build_seconds": fit.seconds["kernel"],
              "factor_seconds": fit.seconds["factor"], "solve_seconds": fit.seconds["solve"],
              "fit_seconds": fit.seconds["total"], "predict_seconds": predict_seconds,
              "kernel_gib": n * n * dtype.itemsize / 2**30}
        log.info("kernel: test error %.4f (train error %.4f on %d points), RKHS norm %.1f, jitter %g; "
                 "build %.1fs, Cholesky %.1fs, solve %.2fs, predict %.1fs", m["test_error"], train_error, k,
                 fit.rkhs_norm, fit.jitter, m["build_seconds"], m["factor_seconds"], m["solve_seconds"], predict_seconds)
        return Outcome(m, {"rkhs_norm_per_class": fit.rkhs_norm_per_class})

    return compute, {"n": n, "device": str(device)}


def minnorm(cfg: DictConfig, opts: MinnormOptions | Mapping[str, Any]) -> tuple[Callable[[], Outcome], dict]:
    """Section 5, linear case: SGD from w0 on least squares; distance to pinv(X) y per epoch."""
    from rethink.theory import minnorm as mn

    opts = MinnormOptions.of(opts)

    n, d, seed = opts.n, opts.d, opts.seed
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    w0 = rng.standard_normal(d) if opts.start == "random" else np.zeros(d)

    def compute() -> Outcome:
        lr = opts.lr or mn.default_learning_rate(x, opts.batch_size)
        t0 = time.perf_counter()
        trace = mn.sgd_least_squares(x, y, epochs=opts.epochs, lr=lr, seed=seed, batch_size=opts.batch_size,
                                     w0=w0.copy())
        seconds = time.perf_counter() - t0
        w_star, y_norm = trace.w_min_norm, float(np.linalg.norm(y))
        scale = max(float(np.linalg.norm(w_star)), np.finfo(np.float64).tiny)
        d0, r0 = float(np.linalg.norm(w0 - w_star)), float(np.linalg.norm(x @ w0 - y))
        history = {"relative_distance": [d0 / scale, *trace.relative_distance],
                   "distance": [d0, *trace.distance],
                   "residual": [r0, *trace.residual],
                   "relative_residual": [r / y_norm for r in (r0, *trace.residual)]}
        if not all(math.isfinite(v) for v in history["distance"]):
            raise RethinkError(f"SGD diverged (task.lr={lr:g}): use a smaller task.lr or null (1 / max ||x_i||^2)")
        m = {"n": n, "d": d, "epochs": opts.epochs, "lr": lr, "seconds": seconds,
             "final_relative_distance": history["relative_distance"][-1],
             "final_relative_residual": history["relative_residual"][-1],
             "norm_ratio": float(np.linalg.norm(trace.w)) / scale, "min_norm": float(np.linalg.norm(w_star)),
             "null_space_distance": float(np.linalg.norm(w0 - np.linalg.pinv(x) @ (x @ w0)))}
        log.info("min-norm SGD (%s start): ||w - pinv(X) y|| / ||pinv(X) y|| = %.3g after %d epochs, "
                 "residual / ||y|| = %.3g, ||w|| / ||w_min|| = %.4f", opts.start, m["final_relative_distance"],
                 opts.epochs, m["final_relative_residual"], m["norm_ratio"])
        return Outcome(m, {"history": history}, history, {"distance.png": distance_figure(history, opts)})

    return compute, {"n": n, "d": d, "device": "cpu"}


def distance_figure(history: dict[str, list[float]], opts: MinnormOptions):
    from rethink.plots import subplots

    fig, ax = subplots(figsize=(6, 3.8))
    epochs = range(len(history["relative_distance"]))
    tiny = np.finfo(np.float64).tiny  # log axis: an exact 0 would vanish
    ax.plot(epochs, [max(v, tiny) for v in history["relative_distance"]], label="||w - pinv(X) y|| / ||pinv(X) y||")
    ax.plot(epochs, [max(v, tiny) for v in history["relative_residual"]], "--", label="||X w - y|| / ||y||")
    ax.set(xlabel="epoch", yscale="log", title=f"SGD from w0 = {opts.start}, n={opts.n}, d={opts.d}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


