"""Log runs made outside Hydra (bench/paper_runs.py JSON, e.g. from a lent GPU) into the MLflow store.

    python -m rethink.jobs.importer docs/results/gpu-h200/paper_runs [--tracking-uri URI]

Each JSON becomes an ordinary FINISHED run with the params, per-epoch metrics and tags a Hydra job
would log, so `rethink.report` treats it like any other run. Importing twice is a no-op (same hash).
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

from rethink.run import lifecycle, runner, track
from rethink.run.identity import hash_values

CONF = Path(__file__).resolve().parents[1] / "conf"  # the Hydra configs (conf/ at the repository root)


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


# The trainer settings a record must share with the standard budget; their values are read from the configs.
BUDGET_KEYS = ("max_epochs", "patience", "stop_at_target", "target_train_acc", "lr", "lr_decay", "lr_decay_period",
               "batch_size", "momentum")
# The preset whose budget a standard record matches: every CIFAR-10 preset trains the same way (the model's
# `paper.max_epochs`, the whole budget: `trainer.stop_at_target: false`), and Table 1's covers all five models.
STANDARD_PRESET = "table1"


@cache
def paper_budget(model: str) -> dict:
    """What a preset at `scale=paper` gives a Hydra job of `model` for `BUDGET_KEYS`, composed from conf/
    (conf/model/<model>.yaml `paper.max_epochs`, the preset's `trainer.stop_at_target`, the trainer defaults)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "scale=paper", f"experiment={STANDARD_PRESET}"])
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    return {k: trainer[k] for k in BUDGET_KEYS}


def budget_tags(rec: dict, scale: str) -> dict[str, str]:
    """`budget` standard only for a full-data record made with its model's paper-scale budget (`paper_budget`);
    else custom, with the differences as `budget_overrides` (as a Hydra job's command line would show them)."""
    s = rec["settings"]
    diffs = [f"trainer.{k}={s[k]}" for k, v in paper_budget(rec["model"]).items() if k in s and s[k] != v]
    if scale != "paper":
        diffs.insert(0, f"dataset.train_size={rec['train_size']}")
    return {"budget": "custom", "budget_overrides": " ".join(diffs)} if diffs else {"budget": "standard"}


def import_record(uri: str, experiment: str, rec: dict, source: str) -> dict[str, float] | None:
    """Log one record as a run through the job skeleton; None when it was imported before."""
    from rethink.jobs.outcome import summary_metrics
    from rethink.run.record import run_name
    from rethink.training.progress import TrainResult

    params = params_of(rec)
    spec = runner.JobSpec(uri=uri, experiment=experiment, identity=hash_values(params))  # pinned by test_identity
    scale = params.pop("choice.scale")
    params = {k: v for k, v in params.items() if not k.startswith("choice.")}
    if lifecycle.find_finished(uri, track.ensure_experiment(uri, experiment), spec.identity):
        return None
    s, history = rec["settings"], rec["history"]
    result = TrainResult(history=history, fit_epoch=rec.get("fit_epoch"), fit_step=rec.get("fit_step"),
                         reached={float(k): tuple(v) for k, v in rec.get("reached", {}).items()},
                         stop_reason=rec["stop_reason"], epochs=len(history), steps=history[-1]["step"],
                         images_per_s=rec["images_per_s"])

    def body(ctx: runner.JobContext) -> dict[str, float]:
        for h in history:
            ctx.run.log_metrics({k: v for k, v in h.items() if k != "step"}, step=h["step"])
        final = summary_metrics(result) | {"wall_time": rec["wall_time"]}
        ctx.run.log_metrics(final, step=result.steps)
        return final

    name = run_name(rec["model"], rec["kind"], rec["level"], s | {"dropout": 0.0}, rec["seed"], scale)
    tags = {"device": rec["device"], "torch": rec["torch"], "imported_from": source, "model": rec["model"],
            "corruption": f"{rec['kind']}@{rec['level']:g}", "stop_reason": rec["stop_reason"], "scale": scale}
    tags |= budget_tags(rec, scale)
    return runner.run_job(spec, lambda: runner.Plan(name, body, params, tags))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--experiment", default="rethink")
    args = ap.parse_args()
    uri = args.tracking_uri or track.default_tracking_uri()
    for path in sorted(Path(args.folder).glob("*.json")):
        done = import_record(uri, args.experiment, json.loads(path.read_text()), str(path))
        print(f"{path.name}: {'imported' if done is not None else 'already imported'}")


if __name__ == "__main__":
    main()
