"""Does Inception v3 fit random labels through the real ImageNet path? The mechanism on a CPU, not the paper's number.

    python -m bench.inception_fit --epochs 60 --json bench/results/inception-fit-cpu.json

Makes (once, under --tree) an ImageNet-layout tree of --classes x --per-class training JPEGs (bench.streaming's
generator), then runs the real command, `python -m rethink model=inception_v3 dataset=imagenet corruption=random_labels`
on it for each --runs optimizer:lr: every training label drawn anew, 80x80 views (Inception v3's evaluation
view: the central 87.5 %, no augmentation), torchvision's Inception v3 from scratch with the recipe's
initialization (model.init=tf; 21.8 M parameters at 10 classes, no auxiliary head at this size), no regularizer,
batch 20, constant LR, until the training set's accuracy in eval mode reaches trainer.target_train_acc (0.999) or
--epochs. Reads each run back from its MLflow store: train/acc per epoch, the epoch it fitted at, the wall time.
Measured 2026-11-29 (bench/results/inception-fit-cpu.json): TF RMSProp at LR 0.01 (the recipe's optimizer; its
LR 0.1 at batch 256, scaled to batch 20) fitted at epoch 37, Adam at LR 0.001 at epoch 12, SGD with momentum at
LR 0.01 reached 94 % in 60 epochs. With torchvision's own initialization (--init torch, model.init=torch: a
logits layer 10x wider than TF's; bench/results/inception-fit-torch-init-cpu.json) RMSProp reached 86 % and SGD
22 % in 60 epochs; Adam fitted at epoch 21.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.streaming import make_tree


def run(tree: Path, work: Path, classes: int, epochs: int, batch: int, lr: float, optimizer: str, seed: int,
        workers: str, init: str) -> dict:
    """One job of the real command on `tree`; its run's metrics read back from the store."""
    import mlflow

    uri = f"sqlite:///{work}/mlflow.db"
    args = ["model=inception_v3", "dataset=imagenet", f"dataset.root={tree}", f"dataset.num_classes={classes}",
            "dataset.image_size=80", "dataset.train_size=null", "dataset.test_size=null",
            "dataset.train_eval_size=null", f"dataset.workers={workers}", f"model.init={init}", "corruption=random_labels", "regularizer=none", f"seed={seed}",
            f"trainer.max_epochs={epochs}", f"trainer.batch_size={batch}", f"trainer.lr={lr}",
            f"trainer.optimizer={optimizer}", "trainer.label_smoothing=0", "trainer.lr_decay=1.0",
            "trainer.checkpoint_every=0", f"mlflow.tracking_uri={uri}", f"hydra.run.dir={work}/hydra"]
    cmd = [sys.executable, "-m", "rethink", *args]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: list[str] = []
    for line in proc.stdout:  # the job's progress, as it trains
        print(line, end="", flush=True)
        tail = [*tail[-40:], line]
    wall = time.perf_counter() - t0
    if proc.wait() != 0:
        raise SystemExit(f"the job failed (exit {proc.returncode}):\n{''.join(tail)}")
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("rethink")
    (r,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") != "sweep"]
    acc = [m.value for m in sorted(client.get_metric_history(r.info.run_id, "train/acc"), key=lambda m: m.step)]
    target = float(r.data.params.get("trainer.target_train_acc", 0.999))
    fitted = next((i + 1 for i, a in enumerate(acc) if a >= target), None)
    return {"command": "python -m rethink " + " ".join(a for a in args if not a.startswith(("mlflow.", "hydra."))),
            "status": r.info.status, "train_acc_per_epoch": [round(a, 4) for a in acc],
            "final_train_acc": acc[-1] if acc else None, "fitted_at_epoch": fitted, "target_train_acc": target,
            "test_acc": r.data.metrics.get("test/acc"), "num_params": int(r.data.params["num_params"]),
            "steps": int(r.data.metrics.get("steps", 0)), "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "rethink-bench-fit-tree")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=10, help="training images per class")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--runs", default="adam:0.001,sgd:0.01,rmsprop_tf:0.01",
                    help="optimizer:lr pairs, one job each (optimizers: adam, sgd, rmsprop_tf)")
    ap.add_argument("--init", default="tf", choices=["tf", "torch"], help="model.init")
    ap.add_argument("--workers", default="0", help="dataset.workers (0: decode in the job's process; the tree is tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the result here")
    a = ap.parse_args()
    tree = make_tree(a.tree, images=a.classes * a.per_class, classes=a.classes, val=2, sizes=(80, 120))
    runs = []
    for pair in a.runs.split(","):
        optimizer, lr = pair.split(":")
        with tempfile.TemporaryDirectory(prefix="rethink-fit-") as work:
            runs.append({"optimizer": optimizer, "lr": float(lr),
                         **run(a.tree, Path(work), a.classes, a.epochs, a.batch, float(lr), optimizer, a.seed, a.workers,
                                  a.init)})
        print(f"{optimizer} lr {lr}: train accuracy {runs[-1]['final_train_acc']:.3f}, fitted at epoch "
              f"{runs[-1]['fitted_at_epoch']}", flush=True)
    out = {"bench": "inception_fit", "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
           f"{len(os.sched_getaffinity(0))} cores", "tree": tree.get("settings"), "images": a.classes * a.per_class,
           "classes": a.classes, "batch": a.batch, "max_epochs": a.epochs, "init": a.init, "runs": runs}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
