"""Per-job overhead of the real CLI: process start -> training, and MLflow logging per epoch.

    python -m bench.overhead [--epochs 10] [--model mlp_1x512]

Runs `python -m rethink` in a subprocess into a temporary SQLite store and splits its wall time into
start-up (interpreter, imports, Hydra composition), job set-up (data from cache, model, MLflow run),
training epochs, and MLflow logging (the time `JobRun.log_metrics` spent on the training thread,
logged as `tracking_seconds`; MLflow's asynchronous logging writes on its own thread).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp_1x512")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-size", type=int, default=5000)
    args = ap.parse_args()
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cmd = [sys.executable, "-m", "rethink", f"model={args.model}", f"dataset.train_size={args.train_size}",
               "dataset.test_size=2000", f"trainer.max_epochs={args.epochs}", "trainer.stop_at_target=false",
               f"mlflow.tracking_uri={uri}", f"hydra.run.dir={tmp}/run"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=os.environ | {"RETHINK_DATA": os.environ.get("RETHINK_DATA", str(Path("data").resolve()))})
        wall = time.perf_counter() - t0
        run = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name("rethink").experiment_id])[0]
        m = run.data.metrics
    job_setup = m["wall_time"] - m["train_time"]
    print(f"# {args.model}, {args.train_size} training images, {args.epochs} epochs, SQLite store")
    print(f"process wall time           {wall:8.2f} s")
    print(f"  start-up (before the job) {wall - m['wall_time']:8.2f} s   interpreter, imports, Hydra, store creation")
    print(f"  job set-up + teardown     {job_setup:8.2f} s   data (cached), model, MLflow run, artifacts, evaluation")
    print(f"  training epochs           {m['train_time']:8.2f} s   ({m['train_time'] / args.epochs:.3f} s per epoch, SGD pass only)")
    epoch = m["wall_time"] / args.epochs  # job wall time per epoch, evaluation and set-up included
    print(f"MLflow logging, training thread {m['tracking_seconds']:8.4f} s = {1000 * m['tracking_seconds'] / args.epochs:.2f} ms per epoch "
          f"= {100 * m['tracking_seconds'] / args.epochs / epoch:.2f}% of an epoch ({epoch:.2f} s incl. evaluation)")


if __name__ == "__main__":
    main()
