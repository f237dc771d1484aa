"""Training throughput of rethink against the conventional pipeline, with FLOP/s and overheads.

    python -m bench.throughput                 # CPU, all paper models (a few minutes)
    python -m bench.throughput --device cuda --no-conventional --json out.json

Per model, in ONE process: rethink's images/s for full epochs (SGD pass + full train-set and test
evaluation, as the jobs run them), the conventional pipeline's (bench/conventional.py), their ratio,
achieved FLOP/s (torch.utils.flop_counter) and its share of the measured matmul peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.conventional import epoch_images_per_s
from rethink.corrupt import Corruption
from rethink.data.memory import DatasetSpec
from rethink.models import MLP, SmallAlexNet, SmallInception
from rethink.training.fit import fit
from rethink.training.settings import TrainSettings

SHAPE = (3, 28, 28)
MODELS = {
    "mlp_1x512": (lambda: MLP(SHAPE, 10, [512]), 0.01),
    "mlp_3x512": (lambda: MLP(SHAPE, 10, [512] * 3), 0.01),
    "alexnet": (lambda: SmallAlexNet(SHAPE, 10), 0.01),
    "inception": (lambda: SmallInception(SHAPE, 10), 0.1),
    "inception_nobn": (lambda: SmallInception(SHAPE, 10, batchnorm=False), 0.1),
}
# Training-set sizes that keep each measurement to tens of seconds on a 2-core CPU.
CPU_SIZES = {"mlp_1x512": 10240, "mlp_3x512": 10240, "alexnet": 2560, "inception": 1280, "inception_nobn": 1280}


def flops_per_image(model_fn, device: torch.device) -> tuple[float, float]:
    """(forward, forward+backward) FLOPs per 28x28x3 image, counted at batch 128."""
    model = model_fn().to(device)
    x = torch.randn(128, *SHAPE, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        F.cross_entropy(model(x), y).backward()
    return fwd.get_total_flops() / 128, both.get_total_flops() / 128


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Measured dense matmul FLOP/s (median of reps) on random data."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10 if device.type == "cuda" else 1):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / (10 if device.type == "cuda" else 1))
    return 2 * n**3 / statistics.median(times[1:])


def rethink_throughput(name: str, data, device: str, epochs: int, **opts) -> dict:
    """Images/s of rethink's training loop (full epochs incl. train-set and test evaluation)."""
    model_fn, lr = MODELS[name]
    torch.manual_seed(0)
    s = TrainSettings(lr=lr, max_epochs=epochs + 1, stop_at_target=False, target_train_acc=1.0, device=device,
                      crop_size=28, **opts)
    res = fit(model_fn(), data, s)
    times = [h["epoch_time"] for h in res.history[1:]]  # the first epoch warms up (allocator, cudnn, compile)
    n = len(data.train_y)
    return {"images_per_s": n / statistics.median(times), "epoch_s": statistics.median(times),
            "first_epoch_s": res.history[0]["epoch_time"], "train_size": n, "test_size": len(data.test_y)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="data")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--train-size", type=int, default=None, help="override the per-model training-set size")
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    ap.add_argument("--no-conventional", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time trainer.compile=true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, peak_dtype)
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "matmul_peak_tflops": peak / 1e12, "peak_dtype": str(peak_dtype)}
    print(f"# {info['device']}  torch {info['torch']}  threads {info['threads']}  "
          f"measured matmul peak {peak / 1e12:.2f} TFLOP/s ({peak_dtype})")
    rows = []
    header = f"{'model':<15}{'n':>7}{'rethink img/s':>15}{'conv. img/s':>13}{'ratio':>7}{'TFLOP/s':>9}{'% peak':>8}"
    print(header)
    for name in args.models.split(","):
        n = args.train_size or (CPU_SIZES[name] if device.type == "cpu" else 50000)
        spec = DatasetSpec(name="cifar10", root=args.data, train_size=n, test_size=args.test_size)
        data = Corruption().apply(spec.load())
        fwd, both = flops_per_image(MODELS[name][0], device)
        row = {"model": name, "fwd_flops": fwd, "train_flops": both} | rethink_throughput(name, data, args.device, args.epochs)
        # Per epoch: forward+backward over the training set, forward over training and test sets.
        epoch_flops = both * row["train_size"] + fwd * (row["train_size"] + row["test_size"])
        row["tflops"] = epoch_flops / row["epoch_s"] / 1e12
        row["share_of_peak"] = row["tflops"] * 1e12 / peak
        if args.compile:
            c = rethink_throughput(name, data, args.device, args.epochs, compile=True)
            row |= {"compiled_images_per_s": c["images_per_s"], "compile_first_epoch_s": c["first_epoch_s"]}
        if not args.no_conventional:
            torch.manual_seed(0)
            row["conventional_images_per_s"] = epoch_images_per_s(MODELS[name][0](), f"{args.data}/cifar10", n, args.test_size,
                                                                  device)
            row["ratio"] = row["images_per_s"] / row["conventional_images_per_s"]
        rows.append(row)
        conv = f"{row['conventional_images_per_s']:>13.0f}{row['ratio']:>6.1f}x" if "ratio" in row else f"{'-':>13}{'-':>7}"
        extra = f"  compiled {row['compiled_images_per_s']:.0f} img/s (first epoch {row['compile_first_epoch_s']:.0f}s)" if args.compile else ""
        print(f"{name:<15}{n:>7}{row['images_per_s']:>15.0f}{conv}{row['tflops']:>9.3f}{100 * row['share_of_peak']:>7.1f}%{extra}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
