"""Cost of `rethink.measures.compute_all` with its defaults, against the training it would follow.

    .venv/bin/python -m bench.measures                          # MLP 1x512 and SmallAlexNet
    .venv/bin/python -m bench.measures --models mlp_1x512 alexnet inception

Each model gets its CPU-scale training-set size (rethink/conf/model/*.yaml `cpu.train_size`: MLP
10,000, AlexNet 1,000, Inception 500) of CIFAR-shaped random data: 3x28x28 Gaussian images labelled
by the initial network's own predictions, so that the network fits its training set as at the end
of a real run (train accuracy near 1, and the PAC-Bayes search evaluates as much as it would there;
on data a network does not fit, its tests pass early and the search is cheaper). It is trained for
`--epochs` plain SGD epochs (batch 128, lr 0.01, momentum 0.9: the cost of a training epoch on this
machine under its present load), then `compute_all` runs `--repeats` times with its defaults, timed
per measure; medians are reported (a shared machine has spikes). The share is compute_all's seconds
over a CPU-scale run estimated as `cpu.max_epochs` (60 / 60 / 50) x the median epoch, training
steps only (no per-epoch test evaluation), so it errs high. Writes bench/results/measures-cpu.json
(`--json`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rethink.measures import compute_all
from rethink.measures.evaluate import correct_count, logits
from rethink.models import MLP, SmallAlexNet, SmallInception

REPO = Path(__file__).resolve().parents[1]
SHAPE = (3, 28, 28)
MODELS = {  # name: (constructor, CPU-scale train_size, CPU-scale max_epochs)
    "mlp_1x512": (lambda: MLP(SHAPE, 10, (512,)), 10_000, 60),
    "alexnet": (lambda: SmallAlexNet(SHAPE, 10), 1_000, 60),
    "inception": (lambda: SmallInception(SHAPE, 10, conv_module="tf_slim"), 500, 50),
}


def train_epochs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> list[float]:
    """Train `model` for `epochs` plain SGD epochs (batch 128, shuffled); each epoch's seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    model.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_model(name: str, epochs: int, repeats: int) -> dict:
    """One model: the median seconds of its training epochs and of each measure over `repeats`
    calls of compute_all, and the values (checked identical across the calls)."""
    make, size, max_epochs = MODELS[name]
    torch.manual_seed(0)
    model = make()
    init_model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(size, *SHAPE, generator=gen)
    y = logits(init_model, x).argmax(dim=1)  # labels the network fits from the start
    epoch_s = statistics.median(train_epochs(model, x, y, epochs))
    calls = []
    for _ in range(repeats):
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        values = compute_all(model, init_model, x, y, timings=seconds)
        calls.append((time.perf_counter() - start, seconds, values))
    total = statistics.median(c[0] for c in calls)
    seconds = {k: statistics.median(c[1][k] for c in calls) for k in calls[0][1]}
    values = calls[0][2]
    run_s = max_epochs * epoch_s
    train_acc = correct_count(model, x, y) / size
    row = {"model": name, "train_size": size, "train_acc": train_acc, "epoch_s": epoch_s, "cpu_scale_run_s": run_s,
           "compute_all_s": total, "share_of_run": total / run_s, "repeats": repeats,
           "identical_values_across_repeats": all(c[2] == values for c in calls),
           "seconds": seconds, "values": values}
    print(f"{name}: {size} examples (train accuracy {train_acc:.3f}), training epoch {epoch_s:.2f} s -> CPU-scale run ~{run_s:.0f} s; "
          f"compute_all {total:.2f} s = {100 * total / run_s:.1f} % (medians)")
    for key, s in seconds.items():
        print(f"  {key:24s} {s:7.3f} s   {values[key]:.6g}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp_1x512", "alexnet"], choices=sorted(MODELS))
    ap.add_argument("--epochs", type=int, default=3, help="training epochs timed per model (median)")
    ap.add_argument("--repeats", type=int, default=3, help="compute_all calls timed per model (median)")
    ap.add_argument("--json", default=str(REPO / "bench/results/measures-cpu.json"))
    args = ap.parse_args()
    rows = [bench_model(name, args.epochs, args.repeats) for name in args.models]
    info = {"what": __doc__.splitlines()[0], "command": "python -m bench.measures --models " + " ".join(args.models),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "nproc": os.cpu_count(),
            "python": platform.python_version(), "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
