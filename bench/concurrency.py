"""Aggregate throughput of k training jobs sharing one device (k separate processes, as a joblib sweep runs them).

    python -m bench.concurrency --device cuda --model inception --ks 1,2,4,8

Workers load data and build the model, wait at a file barrier, then train the same number of epochs
together; aggregate images/s = k * n * epochs / (last finish - common start).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One job: prepare, wait for the barrier, train, write timings."""
    import torch

    from bench.throughput import MODELS
    from rethink.corrupt import Corruption
    from rethink.data.memory import DatasetSpec
    from rethink.training.fit import fit
    from rethink.training.settings import TrainSettings

    data = Corruption().apply(DatasetSpec(name="cifar10", root=args.data, train_size=args.train_size, test_size=2000).load())
    model_fn, lr = MODELS[args.model]
    torch.manual_seed(0)
    # Warm up (cuDNN autotuner, allocator) before the barrier so only steady-state training is timed.
    fit(model_fn(), Corruption().apply(DatasetSpec(name="cifar10", root=args.data, train_size=1024, test_size=256).load()),
          TrainSettings(lr=lr, max_epochs=1, stop_at_target=False, device=args.device, crop_size=28))
    Path(args.barrier + f".ready{args.rank}").touch()
    while not Path(args.barrier).exists():
        time.sleep(0.01)
    start = time.time()
    fit(model_fn(), data, TrainSettings(lr=lr, max_epochs=args.epochs, stop_at_target=False, device=args.device, crop_size=28))
    Path(args.barrier + f".done{args.rank}").write_text(json.dumps({"start": start, "end": time.time()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default="data")
    ap.add_argument("--model", default="inception")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--barrier", default="")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results = []
    print(f"{'k':>3}{'aggregate img/s':>17}{'per job img/s':>15}{'speed-up':>10}   ({args.model}, n={args.train_size}, {args.device})")
    for k in map(int, args.ks.split(",")):
        barrier = f"/tmp/rethink-barrier-{time.time_ns()}"
        procs = [subprocess.Popen([sys.executable, "-m", "bench.concurrency", "--worker", "--rank", str(r), "--barrier", barrier,
                                   "--device", args.device, "--data", args.data, "--model", args.model,
                                   "--train-size", str(args.train_size), "--epochs", str(args.epochs)]) for r in range(k)]
        while sum(Path(f"{barrier}.ready{r}").exists() for r in range(k)) < k:
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit(f"a worker failed for k={k}")
            time.sleep(0.05)
        Path(barrier).touch()
        for p in procs:
            p.wait()
        spans = [json.loads(Path(f"{barrier}.done{r}").read_text()) for r in range(k)]
        wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
        agg = k * args.train_size * args.epochs / wall
        results.append({"k": k, "aggregate_images_per_s": agg, "wall_s": wall})
        print(f"{k:>3}{agg:>17.0f}{agg / k:>15.0f}{agg / results[0]['aggregate_images_per_s']:>9.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "device": args.device, "train_size": args.train_size,
                                               "epochs": args.epochs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
