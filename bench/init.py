"""Initialization vs fitting random labels: epochs to 99 % / 99.9 % train accuracy under `model.init=glorot|torch`.

    python -m bench.init --seeds 0,1,2                      # MLP 1x512, 10,000 CIFAR-10 images (label `10k`)
    python -m bench.init --label paper --train-size 0 --extra scale=paper trainer.patience=25 --max-epochs 200
    python -m bench.init --label paper-no-decay --inits glorot --train-size 0 \
        --extra scale=paper trainer.patience=25 trainer.lr_decay=1.0 --max-epochs 200
    python -m bench.init --label paper-decay-per-2-epochs --train-size 0 \
        --extra scale=paper trainer.patience=25 trainer.lr_decay_period=782 --max-epochs 200

Each run is a real `python -m rethink model=mlp_1x512 corruption=1.0 model.init=<init> ...` subprocess
into one SQLite store (`--store`, default a temporary directory; a kept store skips the jobs that
already FINISHED there), then the summary metrics and the per-epoch train accuracy are read back from
MLflow and written, with the commands, under `--label` in bench/results/init-cpu.json (other labels
already there are kept). `--train-size 0`: the full training set.
RETHINK_DATA (default: ./data) must hold cifar10/.
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

REPO = Path(__file__).resolve().parents[1]
CURVE_EPOCHS = (5, 10, 20, 30, 50, 100)  # train accuracy reported at these epochs (when reached)


def env() -> dict[str, str]:
    """This checkout's rethink first on the path (jobs run in the store's directory), the data, unbuffered."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    data = os.environ.get("RETHINK_DATA", str(REPO / "data"))
    return os.environ | {"PYTHONPATH": path, "RETHINK_DATA": str(Path(data).resolve()), "PYTHONUNBUFFERED": "1"}


def job_args(args: argparse.Namespace, init: str, seed: int) -> list[str]:
    """The overrides of one job (the store and run directory added by `run_job`)."""
    size = "null" if args.train_size == 0 else str(args.train_size)
    return [f"model={args.model}", f"corruption={args.corruption}", f"model.init={init}", f"seed={seed}",
            f"dataset.train_size={size}", f"dataset.test_size={args.test_size}",
            f"trainer.max_epochs={args.max_epochs}", *args.extra]


def run_job(overrides: list[str], store: Path, tag: str) -> float:
    """Run one `python -m rethink` job into `store`; its wall time in seconds (log in store/tag.log)."""
    cmd = [sys.executable, "-m", "rethink", *overrides, f"mlflow.tracking_uri=sqlite:///{store}/mlflow.db",
           f"hydra.run.dir={store}/runs/{tag}"]
    t0 = time.perf_counter()
    with open(store / f"{tag}.log", "w") as log:
        subprocess.run(cmd, check=True, cwd=store, env=env(), stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def job_identity(overrides: list[str]) -> str:
    """The config hash `python -m rethink OVERRIDES` gives its run (composed here with the jobs' environment)."""
    from hydra import compose, initialize_config_dir

    from rethink.__main__ import normalize_argv
    from rethink.run.identity import config_hash

    os.environ["RETHINK_DATA"] = env()["RETHINK_DATA"]  # dataset.root is part of the identity
    with initialize_config_dir(config_dir=str(REPO / "rethink" / "conf"), version_base="1.3"):
        return config_hash(compose("config", overrides=normalize_argv(overrides)))


def read_run(store: Path, overrides: list[str]) -> dict:
    """The FINISHED run of these overrides in the store (found by its config hash): its summary
    metrics and train-accuracy curve."""
    from rethink.run import track

    uri = f"sqlite:///{store}/mlflow.db"
    df = track.runs_frame(uri, "rethink", f"tags.config_hash = '{job_identity(overrides)}' and attributes.status = 'FINISHED'")
    row = df.sort_values("start_time").iloc[-1]
    acc = [v for _, v in sorted(track.metric_history(uri, row["run_id"], "train/acc"))]
    lr = [v for _, v in sorted(track.metric_history(uri, row["run_id"], "lr"))]

    def metric(key: str) -> float | None:
        v = row.get(f"metrics.{key}")
        return None if v is None or v != v else float(v)

    return {"init": row["params.model.init"], "seed": int(float(row["params.seed"])), "epochs": len(acc),
            "stop_reason": row.get("tags.stop_reason"),
            "epochs_to_99": metric("epochs_to_99"), "epochs_to_99_9": metric("epochs_to_99_9"),
            "final_train_acc": acc[-1], "best_train_acc": max(acc), "final_lr": lr[-1],
            "train_acc_at": {e: acc[e - 1] for e in CURVE_EPOCHS if e <= len(acc)},
            "train_examples": int(float(row["params.train_examples"])), "wall_time": metric("wall_time")}


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per init: epochs to 99 % / 99.9 % over the seeds (None where a run never got there)."""
    out: dict[str, dict] = {}
    for r in runs:
        s = out.setdefault(r["init"], {"epochs_to_99": [], "epochs_to_99_9": [], "final_train_acc": []})
        for k in s:
            s[k].append(r[k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp_1x512")
    ap.add_argument("--corruption", default="1.0")
    ap.add_argument("--inits", default="glorot,torch")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", default="1000", help="test images evaluated per epoch (null: all)")
    ap.add_argument("--max-epochs", type=int, default=150)
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides, e.g. scale=paper")
    ap.add_argument("--store", default=None, help="keep the MLflow store here (default: a temporary directory)")
    ap.add_argument("--label", default="10k", help="the key of this comparison in the JSON")
    ap.add_argument("--json", default=str(REPO / "bench/results/init-cpu.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store or tmp).resolve()
        store.mkdir(parents=True, exist_ok=True)
        runs, commands = [], []
        for seed in map(int, args.seeds.split(",")):
            for init in args.inits.split(","):
                overrides = job_args(args, init, seed)
                commands.append("python -m rethink " + " ".join(overrides))
                wall = run_job(overrides, store, f"{args.label}-{init}-s{seed}")
                runs.append(read_run(store, overrides))
                r = runs[-1]
                print(f"{init:<7} seed {seed}: 99% at epoch {r['epochs_to_99']}, 99.9% at {r['epochs_to_99_9']}, "
                      f"final train acc {r['final_train_acc']:.4f} after {r['epochs']} epochs (this call: {wall:.0f}s)", flush=True)
    result = {"info": {"what": __doc__.splitlines()[0], "commands": commands, "python": platform.python_version(),
                       "nproc": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d")},
              "summary": summarize(runs), "runs": runs}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    everything = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(everything | {args.label: result}, indent=1) + "\n")
    print(f"wrote {args.label} into {out}")


if __name__ == "__main__":
    main()
