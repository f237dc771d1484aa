"""Aggregate training throughput against the pack size k (rethink.training.packed_loop: k jobs as one stacked model).

    python -m bench.packing --device cpu --models mlp_1x512,mlp_3x512 --ks 1,2,4,8 --json bench/results/packing-cpu.json
    python -m bench.packing --device cuda --ks 1,2,4,8,16,32

k = 1 is the solo path (rethink.train.train); k > 1 trains k members (true labels, seeds 0..k-1) together.
Aggregate images/s = k * n * epochs / wall time of the timed epochs (evaluation of train and test set
included, as in real runs), after one warm-up epoch; TFLOP/s from torch's FLOP counter (training pass +
two evaluation passes per epoch), and its share of the device's measured matmul peak (bf16 on CUDA).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from bench.throughput import CPU_SIZES, MODELS, flops_per_image, matmul_peak
from rethink.corrupt import Corruption
from rethink.data.memory import DatasetSpec
from rethink.training.fit import fit
from rethink.training.packed_loop import Member, train_pack
from rethink.training.settings import TrainSettings


def measure(name: str, data, k: int, device: str, epochs: int) -> float:
    """Seconds for `epochs` epochs of k members (k = 1: the solo path), after a warm-up epoch."""
    model_fn, lr = MODELS[name]

    def settings(max_epochs: int, seed: int) -> TrainSettings:
        return TrainSettings(lr=lr, max_epochs=max_epochs, stop_at_target=False, device=device, crop_size=28,
                             seed=seed, checkpoint_every=None)

    def run(max_epochs: int) -> None:
        if k == 1:
            torch.manual_seed(0)
            fit(model_fn(), data, settings(max_epochs, 0))
            return
        members = []
        for seed in range(k):
            torch.manual_seed(seed)
            members.append(Member(model_fn(), data, settings(max_epochs, seed), done=lambda r: None))
        train_pack(members)

    run(1)  # warm-up: allocator, cuDNN autotuning, first-call dispatch
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(epochs)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="data")
    ap.add_argument("--models", default="mlp_1x512,mlp_3x512,alexnet,inception,inception_nobn")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--train-size", type=int, default=None, help="default: 10,000 on CUDA, bench.throughput's CPU sizes")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    peak = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
            "torch": torch.__version__, "python": platform.python_version(), "epochs": args.epochs,
            "matmul_peak_tflops": peak / 1e12, "date": time.strftime("%Y-%m-%d")}
    rows = []
    print(f"{'model':<15}{'k':>4}{'n':>7}{'agg img/s':>11}{'speed-up':>10}{'TFLOP/s':>9}{'% peak':>8}   {info['device']}")
    for name in args.models.split(","):
        n = args.train_size or (10000 if device.type == "cuda" else CPU_SIZES[name])
        data = Corruption().apply(DatasetSpec(name="cifar10", root=args.data, train_size=n, test_size=min(n, 2000)).load())
        fwd, both = flops_per_image(MODELS[name][0], device)
        epoch_flops = both * n + fwd * (n + len(data.test_y))
        base = None
        for k in map(int, args.ks.split(",")):
            seconds = measure(name, data, k, args.device, args.epochs)
            ips = k * n * args.epochs / seconds
            base = base or ips
            tflops = k * epoch_flops * args.epochs / seconds / 1e12
            row = {"model": name, "k": k, "train_size": n, "test_size": len(data.test_y), "seconds": seconds,
                   "images_per_s": ips, "speedup_vs_k1": ips / base, "tflops": tflops, "share_of_peak": tflops * 1e12 / peak}
            rows.append(row)
            print(f"{name:<15}{k:>4}{n:>7}{ips:>11.0f}{ips / base:>9.2f}x{tflops:>9.3f}{100 * row['share_of_peak']:>7.1f}%", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
