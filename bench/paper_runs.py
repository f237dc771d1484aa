"""Paper-scale training runs without Hydra/MLflow (for a lent GPU): one JSON per run, written as it finishes.

    python -m bench.paper_runs --device cuda --out DIR --runs mlp_1x512:labels:0,mlp_1x512:labels:1 [--budget-s 300]

Each run: full CIFAR-10 (or --train-size), the paper's schedule (LR x0.95 per epoch), stop at
--target train accuracy (eval mode) or --max-epochs. `python -m rethink.jobs.importer DIR` logs the JSON
files into the MLflow store as ordinary runs, so the report reads them like any other.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.throughput import MODELS
from rethink.corrupt import Corruption
from rethink.data.memory import DatasetSpec
from rethink.training.fit import fit
from rethink.training.settings import TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", required=True, help="comma list of model:kind:level[:regularizers+joined]")
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--target", type=float, default=0.999)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new run after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = DatasetSpec(name="cifar10", root=args.data, train_size=args.train_size).load()
    t_start = time.time()
    for spec in args.runs.split(","):
        if time.time() - t_start > args.budget_s:
            print(f"budget spent: not starting {spec}", flush=True)
            continue
        model_name, kind, level, *regs = spec.split(":")
        regs = regs[0].split("+") if regs else []
        corrupted = Corruption(kind=kind, level=float(level), seed=args.seed).apply(data)
        model_fn, lr = MODELS[model_name]
        torch.manual_seed(args.seed)
        s = TrainSettings(lr=lr, max_epochs=args.max_epochs, target_train_acc=args.target, device=args.device,
                          crop_size=28, seed=args.seed, weight_decay=5e-4 if "weight_decay" in regs else 0.0,
                          random_crop="random_crop" in regs, patience=25)
        t0 = time.time()
        res = fit(model_fn(), corrupted, s)
        last = res.history[-1]
        print(f"{spec:<32} {res.stop_reason:<10} epochs {res.epochs:>4}  train {last['train/acc']:.4f}  test {last['test/acc']:.4f}"
              f"  {time.time() - t0:7.1f}s  {res.images_per_s:8.0f} img/s", flush=True)
        record = {"model": model_name, "kind": kind, "level": float(level), "regularizers": regs, "seed": args.seed,
                  "train_size": len(corrupted.train_y), "test_size": len(corrupted.test_y), "settings": vars(s),
                  "device": torch.cuda.get_device_name() if s.device.startswith("cuda") else "cpu", "torch": torch.__version__,
                  "history": res.history, "fit_epoch": res.fit_epoch, "fit_step": res.fit_step,
                  "reached": {str(k): v for k, v in res.reached.items()}, "stop_reason": res.stop_reason,
                  "wall_time": time.time() - t0, "images_per_s": res.images_per_s}
        (out / f"{model_name}-{kind}{level}-{'+'.join(regs) or 'none'}-s{args.seed}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
