"""Where a CPU training epoch spends its time: torch.profiler over one epoch of rethink's loop.

    python -m bench.profile_cpu [--model inception] [--train-size 512]
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from bench.throughput import MODELS
from rethink.corrupt import Corruption
from rethink.data.memory import DatasetSpec
from rethink.training.fit import fit
from rethink.training.settings import TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception")
    ap.add_argument("--train-size", type=int, default=512)
    ap.add_argument("--test-size", type=int, default=512)
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    data = Corruption().apply(DatasetSpec(name="cifar10", root="data", train_size=args.train_size,
                                          test_size=args.test_size).load())
    fn, lr = MODELS[args.model]
    s = TrainSettings(lr=lr, max_epochs=1, stop_at_target=False, device="cpu", crop_size=28)
    fit(fn(), data, s)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fit(fn(), data, s)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
