"""Measurements behind docs/theory-notes.md: Theorem 1 on CIFAR-10, kernel Table 3, min-norm SGD.

Run one part at a time (each prints one JSON line per measurement), e.g.
    .venv/bin/python bench/theory_measure.py theorem1
    .venv/bin/python bench/theory_measure.py kernel --data mnist --n 5000 10000 --threads 1
    .venv/bin/python bench/theory_measure.py kernel --data cifar-conv --n 5000 --filters 1024
    .venv/bin/python bench/theory_measure.py minnorm
    .venv/bin/python bench/theory_measure.py pack .data/theory_pack   # xz-packed copy for a GPU box
Data come from ./data (RETHINK_DATA) or, if RETHINK_THEORY_PACK names a folder, from its pack.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import time
from pathlib import Path

import numpy as np
import torch

from rethink.theory import expressivity as ex
from rethink.theory import features as ft
from rethink.theory import kernels as kr
from rethink.theory import minnorm as mn

DATA = Path(os.environ.get("RETHINK_DATA", Path(__file__).resolve().parents[1] / "data"))
PACK = os.environ.get("RETHINK_THEORY_PACK")
VAL_SIZE = 5000  # held-out TRAIN images used to choose gamma / feature design, never the test set


def emit(record: dict) -> None:
    """Print one measurement as a JSON line (flushed, so a killed run keeps what it printed)."""
    print(json.dumps(record), flush=True)


def decode_jpegs(blobs: list[bytes]) -> torch.Tensor:
    """Decode a list of JPEG byte strings to uint8 (N,3,H,W)."""
    import torchvision.io as tio

    return torch.stack(
        [tio.decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)) for b in blobs]
    )


def read_cifar_jpegs(split: str) -> tuple[list[bytes], torch.Tensor]:
    """JPEG bytes and labels of an ImageFolder split; classes = sorted folder names, files sorted."""
    root = DATA / "cifar10" / split
    blobs, labels = [], []
    for label, cls in enumerate(sorted(p.name for p in root.iterdir() if p.is_dir())):
        for path in sorted((root / cls).iterdir()):
            blobs.append(path.read_bytes())
            labels.append(label)
    return blobs, torch.tensor(labels)


def load_cifar10(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 -> uint8 (N,3,32,32) and int64 labels, from the JPEG tree or the pack."""
    if PACK:
        with lzma.open(Path(PACK) / f"cifar10_{split}.npz.xz") as f:
            z = np.load(io.BytesIO(f.read()))
        data, offsets = z["data"].tobytes(), z["offsets"]
        blobs = [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        return decode_jpegs(blobs), torch.from_numpy(z["labels"]).long()
    blobs, labels = read_cifar_jpegs(split)
    return decode_jpegs(blobs), labels


def load_mnist(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST -> uint8 (N,28,28) and int64 labels, from the raw IDX files or the pack."""
    if PACK:
        with lzma.open(Path(PACK) / "mnist.npz.xz") as f:
            z = np.load(io.BytesIO(f.read()))
        key = "train" if train else "test"
        return torch.from_numpy(z[f"{key}_images"]), torch.from_numpy(z[f"{key}_labels"]).long()
    import torchvision

    ds = torchvision.datasets.MNIST(str(DATA), train=train, download=False)
    return ds.data, ds.targets


def run_pack(out_dir: Path) -> None:
    """Write xz-compressed copies of both data sets (~26 MB) that a GPU machine can carry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        blobs, labels = read_cifar_jpegs(split)
        offsets = np.cumsum([0] + [len(b) for b in blobs])
        buf = io.BytesIO()
        np.savez(
            buf,
            data=np.frombuffer(b"".join(blobs), np.uint8),
            offsets=offsets,
            labels=labels.numpy(),
        )
        with lzma.open(out_dir / f"cifar10_{split}.npz.xz", "wb", preset=6) as f:
            f.write(buf.getvalue())
    (tri, trl), (tei, tel) = load_mnist(True), load_mnist(False)
    buf = io.BytesIO()
    np.savez(
        buf,
        train_images=tri.numpy(),
        train_labels=trl.numpy(),
        test_images=tei.numpy(),
        test_labels=tel.numpy(),
    )
    with lzma.open(out_dir / "mnist.npz.xz", "wb", preset=6) as f:
        f.write(buf.getvalue())
    emit({"part": "pack", "files": {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}})


def run_theorem1(seed: int) -> None:
    """Theorem 1 on all 50k CIFAR-10 training images with random labels; test on the 10k test images."""
    x_train, _ = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    x = kr.scale_and_flatten(x_train).double().numpy()
    xt = kr.scale_and_flatten(x_test).double().numpy()
    labels = np.random.default_rng(seed).integers(0, 10, x.shape[0])
    report = ex.theorem1_report(x, labels.astype(np.float64), seed=seed)
    net = ex.fit_two_layer_relu(x, labels.astype(np.float64), seed=seed)
    pred_test = ex.predict_labels(net, xt, 10)
    report.update(
        train_accuracy=ex.classification_accuracy(net, x, labels, 10),
        train_accuracy_direct=float(
            np.mean(np.clip(np.rint(ex.evaluate_direct(net, x)), 0, 9) == labels)
        ),
        test_accuracy_true_labels=ex.classification_accuracy(net, xt, y_test.numpy(), 10),
        test_prediction_histogram=np.bincount(pred_test, minlength=10).tolist(),
        test_output_abs_median=float(np.median(np.abs(ex.evaluate_prefix(net, xt)))),
    )
    emit({"part": "theorem1", **report})
    for n in (1000, 5000, 50000):  # the same pipeline in single precision
        try:
            r32 = ex.theorem1_report(x[:n], labels[:n], seed=seed, dtype=np.float32)
            net32 = ex.fit_two_layer_relu(x[:n], labels[:n], seed=seed, dtype=np.float32)
            r32["train_accuracy"] = ex.classification_accuracy(net32, x[:n], labels[:n], 10)
            emit({"part": "theorem1_float32", **r32})
        except ValueError as err:
            p32 = np.sort(
                x[:n].astype(np.float32) @ ex.random_direction(x.shape[1], seed, np.float32)
            )
            emit(
                {
                    "part": "theorem1_float32",
                    "n": n,
                    "error": str(err),
                    "ties": int(np.count_nonzero(np.diff(p32) <= 0)),
                }
            )


def split_indices(total: int, seed: int) -> torch.Tensor:
    """One fixed permutation of the train set: subsets are its prefixes (nested), validation its last VAL_SIZE."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))


def conv_features(
    train_img: torch.Tensor, eval_img: torch.Tensor, args: argparse.Namespace
) -> tuple:
    """Random conv-net features of train and eval images with one shared filter bank."""
    source = ft.standardize_images(train_img[:2000]) if args.filter_source == "patches" else None
    filt = ft.random_filters(args.filters, args.kernel_size, args.seed, source=source)
    ftr = ft.random_conv_features(train_img, filters=filt, pool=args.pool, device=args.device)
    fev = ft.random_conv_features(eval_img, filters=filt, pool=args.pool, device=args.device)
    if args.feature_norm == "standardize":
        ftr, fev = ft.standardize_features(ftr, fev)
    return ftr, fev


def run_kernel(args: argparse.Namespace) -> None:
    """Fit the min-norm RBF interpolant on nested train subsets and report the eval-set error."""
    torch.set_num_threads(args.threads)
    try:  # OpenBLAS (scipy's Cholesky) slows down ~10x when its 2 threads share 2 busy cores
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        pass
    if args.data == "mnist":
        (xtr_all, ytr_all), (xte, yte) = load_mnist(True), load_mnist(False)
    else:
        (xtr_all, ytr_all), (xte, yte) = load_cifar10("train"), load_cifar10("test")
    perm = split_indices(xtr_all.shape[0], args.seed)
    if args.eval_on == "val":
        xte, yte = xtr_all[perm[-VAL_SIZE:]], ytr_all[perm[-VAL_SIZE:]]
    dtype = torch.float64 if args.float64 else torch.float32
    for n in args.n:
        if args.eval_on == "val" and n > xtr_all.shape[0] - VAL_SIZE:
            raise ValueError(f"n={n} overlaps the validation images")
        idx = perm[:n]
        t0 = time.perf_counter()
        if args.data == "cifar-conv":
            xtr, xev = conv_features(xtr_all[idx], xte, args)
        else:
            xtr, xev = kr.scale_and_flatten(xtr_all[idx]), kr.scale_and_flatten(xte)
        feature_seconds = time.perf_counter() - t0
        ytr = ytr_all[idx]
        median_gamma = kr.median_heuristic_gamma(xtr, seed=args.seed)
        for scale in args.gamma_scale:
            g = (kr.MNIST_GAMMA if args.data == "mnist" else median_gamma) * scale
            t0 = time.perf_counter()
            fit = kr.fit_kernel_interpolant(
                xtr, kr.one_hot(ytr, 10), gamma=g, dtype=dtype, device=args.device
            )
            t1 = time.perf_counter()
            pred = kr.predict(xtr, fit.alpha, xev, g, chunk=args.chunk)
            kr._sync(torch.device(args.device))
            t2 = time.perf_counter()
            train_err = None
            if args.train_error:
                train_err = kr.error_rate(
                    kr.predict(xtr, fit.alpha, xtr[:5000], g, chunk=args.chunk), ytr[:5000]
                )
            emit(
                {
                    "part": "kernel",
                    "data": args.data,
                    "n": n,
                    "d": int(xtr.shape[1]),
                    "dtype": str(dtype),
                    "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                    "gamma": g,
                    "gamma_scale": scale,
                    "median_gamma": median_gamma,
                    "eval_on": args.eval_on,
                    "n_eval": int(xev.shape[0]),
                    "error": kr.error_rate(pred, yte),
                    "train_error_first5k": train_err,
                    "rkhs_norm": fit.rkhs_norm,
                    "jitter": fit.jitter,
                    "attempts": fit.attempts,
                    "filters": args.filters if args.data == "cifar-conv" else None,
                    "filter_source": args.filter_source if args.data == "cifar-conv" else None,
                    "feature_norm": args.feature_norm if args.data == "cifar-conv" else None,
                    "pool": args.pool if args.data == "cifar-conv" else None,
                    "seconds_features": round(feature_seconds, 2),
                    "seconds_kernel": round(fit.seconds["kernel"], 2),
                    "seconds_factor": round(fit.seconds["factor"], 2),
                    "seconds_solve": round(fit.seconds["solve"], 2),
                    "seconds_fit_total": round(t1 - t0, 2),
                    "seconds_predict": round(t2 - t1, 2),
                    "K_gib": n * n * (8 if args.float64 else 4) / 2**30,
                }
            )
            del fit
            if args.device == "cuda":
                torch.cuda.empty_cache()


def run_minnorm(args: argparse.Namespace) -> None:
    """Distance of SGD iterates to pinv(X) y, from zero and from a random start, on Gaussian data."""
    rng = np.random.default_rng(args.seed)
    for n, d in ((20, 100), (100, 1000), (500, 5000)):
        x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
        for start, w0 in (("zero", None), ("random", rng.standard_normal(d))):
            trace = mn.sgd_least_squares(x, y, epochs=args.epochs, seed=args.seed, w0=w0)
            marks = [e for e in (1, 10, 100, args.epochs) if e <= args.epochs]
            emit(
                {
                    "part": "minnorm",
                    "n": n,
                    "d": d,
                    "start": start,
                    "lr": mn.default_learning_rate(x),
                    "relative_distance": {e: trace.relative_distance[e - 1] for e in marks},
                    "relative_residual": {
                        e: trace.residual[e - 1] / float(np.linalg.norm(y)) for e in marks
                    },
                    "norm_w_over_norm_min": float(
                        np.linalg.norm(trace.w) / np.linalg.norm(trace.w_min_norm)
                    ),
                }
            )


def main() -> None:
    """Parse the sub-command and run it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)
    p1 = sub.add_parser("theorem1")
    p1.add_argument("--seed", type=int, default=0)
    pk = sub.add_parser("kernel")
    pk.add_argument("--data", choices=["mnist", "cifar-raw", "cifar-conv"], required=True)
    pk.add_argument("--n", type=int, nargs="+", required=True)
    pk.add_argument(
        "--gamma-scale",
        type=float,
        nargs="+",
        default=[1.0],
        help="gamma = scale * (0.02 for mnist, 1/median sq. distance for cifar)",
    )
    pk.add_argument("--eval-on", choices=["test", "val"], default="test")
    pk.add_argument("--filters", type=int, default=1024)
    pk.add_argument("--filter-source", choices=["gaussian", "patches"], default="gaussian")
    pk.add_argument("--feature-norm", choices=["none", "standardize"], default="none")
    pk.add_argument("--kernel-size", type=int, default=6)
    pk.add_argument("--pool", type=int, default=2)
    pk.add_argument("--chunk", type=int, default=1000)
    pk.add_argument("--threads", type=int, default=2)
    pk.add_argument("--device", default="cpu")
    pk.add_argument("--float64", action="store_true")
    pk.add_argument("--train-error", action="store_true")
    pk.add_argument("--seed", type=int, default=0)
    pm = sub.add_parser("minnorm")
    pm.add_argument("--epochs", type=int, default=1000)
    pm.add_argument("--seed", type=int, default=0)
    pp = sub.add_parser("pack")
    pp.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    if args.part == "theorem1":
        run_theorem1(args.seed)
    elif args.part == "kernel":
        run_kernel(args)
    elif args.part == "minnorm":
        run_minnorm(args)
    else:
        run_pack(args.out_dir)


if __name__ == "__main__":
    main()
