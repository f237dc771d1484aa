"""Log runs made outside Hydra (bench/paper_runs.py JSON, e.g. from a lent GPU) into the MLflow store.

    python -m rethink.importer docs/results/gpu-h200/paper_runs [--tracking-uri URI]

Each JSON becomes an ordinary FINISHED run with the params, per-epoch metrics and tags a Hydra job
would log, so `rethink.report` treats it like any other run. Importing twice is a no-op (same hash).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from rethink import track
from rethink.train import FIT_THRESHOLDS


def params_of(rec: dict) -> dict:
    """The params a Hydra job with the same settings would log (the keys the report reads)."""
    s = rec["settings"]
    regs = rec.get("regularizers", [])
    return {
        "model.name": rec["model"], "dataset.name": "cifar10", "corruption.kind": rec["kind"],
        "corruption.level": rec["level"], "seed": rec["seed"], "train_examples": rec["train_size"],
        "test_examples": rec["test_size"], "regularizer.weight_decay": s["weight_decay"],
        "regularizer.random_crop": s["random_crop"], "regularizer.flip": s["flip"], "regularizer.dropout": 0.0,
        "choice.scale": "paper" if rec["train_size"] == 50000 else "custom",
        "choice.regularizer": "[" + ", ".join(regs) + "]" if regs else "none",
    } | {f"trainer.{k}": v for k, v in s.items() if k not in ("weight_decay", "random_crop", "flip", "crop_size", "seed")}


def import_record(uri: str, experiment_id: str, rec: dict, source: str) -> str | None:
    """Log one record as a run; return its id, or None when an identical record was imported before."""
    params = params_of(rec)
    identity = hashlib.sha256(json.dumps({k: track.param_value(v) for k, v in sorted(params.items())}).encode()).hexdigest()[:16]
    if track.find_finished(uri, experiment_id, identity):
        return None
    name = f"{rec['model']}-{rec['kind']}{rec['level']:g}-{'+'.join(rec.get('regularizers', [])) or 'none'}-s{rec['seed']}"
    tags = {"config_hash": identity, "device": rec["device"], "torch": rec["torch"], "imported_from": source,
            "model": rec["model"], "corruption": f"{rec['kind']}@{rec['level']:g}", "stop_reason": rec["stop_reason"]}
    with track.start_run(uri, experiment_id, name, tags) as run:
        run.log_params(params)
        for h in rec["history"]:
            run.log_metrics({k: v for k, v in h.items() if k != "step"}, step=h["step"])
        final = {"wall_time": rec["wall_time"], "images_per_s": rec["images_per_s"], "epochs": len(rec["history"]),
                 "steps": rec["history"][-1]["step"]}
        if rec.get("fit_step") is not None:
            final |= {"fit_epoch": rec["fit_epoch"], "fit_step": rec["fit_step"]}
        for thr in FIT_THRESHOLDS:
            if str(thr) in rec.get("reached", {}):
                tag = f"{thr * 100:g}".replace(".", "_")
                epoch, step = rec["reached"][str(thr)]
                final |= {f"epochs_to_{tag}": epoch, f"steps_to_{tag}": step}
        run.log_metrics(final, step=rec["history"][-1]["step"])
    return run.run_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--experiment", default="rethink")
    args = ap.parse_args()
    uri = args.tracking_uri or track.default_tracking_uri()
    exp = track.ensure_experiment(uri, args.experiment)
    for path in sorted(Path(args.folder).glob("*.json")):
        run_id = import_record(uri, exp, json.loads(path.read_text()), str(path))
        print(f"{path.name}: {'imported as ' + run_id if run_id else 'already imported'}")


if __name__ == "__main__":
    main()
