"""One job: compose -> data -> corrupt -> model -> train -> track. Owns the MLflow run."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rethink import plots, track
from rethink.corrupt import Corruption
from rethink.data import DatasetSpec
from rethink.errors import RethinkError
from rethink.models import count_params
from rethink.train import FIT_THRESHOLDS, TrainSettings, resolve_device, train

log = logging.getLogger("rethink")

COLUMNS = [("epoch", "epoch", "{:>5d}"), ("step", "step", "{:>7d}"), ("lr", "lr", "{:>8.5f}"),
           ("train/loss", "loss", "{:>8.4f}"), ("train/acc", "train_acc", "{:>9.4f}"),
           ("test/acc", "test_acc", "{:>8.4f}"), ("generalization_gap", "gap", "{:>7.4f}"),
           ("epoch_time", "sec", "{:>6.2f}")]


def build(target_cfg: DictConfig) -> Any:
    """`hydra.utils.instantiate`, surfacing our own one-line errors instead of Hydra's wrapper."""
    try:
        return instantiate(target_cfg, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, RethinkError):
            raise e.__cause__ from None
        raise


def train_settings(cfg: DictConfig) -> TrainSettings:
    """The trainer section plus the regularizer switches the loop needs."""
    r = cfg.regularizer
    return TrainSettings(**OmegaConf.to_container(cfg.trainer, resolve=True), weight_decay=float(r.weight_decay),
                         weight_decay_on=r.weight_decay_on, random_crop=bool(r.random_crop), flip=bool(r.flip),
                         crop_size=cfg.dataset.crop_size, seed=int(cfg.seed))


def hydra_context() -> dict[str, Any]:
    """Sweep dir, job number, overrides and group choices (empty outside a Hydra app)."""
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return {"sweep_dir": hc.sweep.dir if hc.mode.name == "MULTIRUN" else hc.run.dir,
            "job_num": hc.job.get("num", 0), "overrides": list(hc.overrides.task),
            "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}}


def run_name(cfg: DictConfig, choices: dict) -> str:
    """A readable, explicit MLflow run name, e.g. `mlp_1x512-labels0.5-none-s0`."""
    regs = str(choices.get("regularizer", "none")).strip("[]").replace(", ", "+") or "none"
    return f"{cfg.model.name}-{cfg.corruption.kind}{float(cfg.corruption.level):g}-{regs}-s{cfg.seed}"


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (skipped if already FINISHED)."""
    dataset: DatasetSpec = build(cfg.dataset)
    corruption: Corruption = build(cfg.corruption)
    settings = train_settings(cfg)
    hctx = hydra_context()
    uri = track.tracking_uri(cfg)
    experiment_id = track.ensure_experiment(uri, cfg.mlflow.experiment)
    identity = track.config_hash(cfg)
    if not cfg.rerun and (done := track.find_finished(uri, experiment_id, identity)):
        log.info("skip: an identical job (config %s) already FINISHED as run %s; rerun=true trains again",
                 identity, done["run_id"])
        return done["metrics"]

    t0 = time.perf_counter()
    data = dataset.load()
    corrupted = corruption.apply(data)
    torch.manual_seed(int(cfg.seed))
    model = build(cfg.model.net)
    device = resolve_device(settings.device)
    name = run_name(cfg, hctx.get("choices", {}))
    log.info("%s: %d training / %d test images, %d params, %s, %.0f%% of training examples changed by %s",
             name, len(corrupted.train_y), len(corrupted.test_y), count_params(model), device,
             100 * float(corrupted.changed.float().mean()), corruption.kind)
    if hctx.get("choices", {}).get("scale") == "cpu":
        log.info("scale=cpu (reduced): a stratified subset of the training set and the paper's per-step LR "
                 "schedule; add scale=paper for the full data set and per-epoch decay")

    tags = {"config_hash": identity, "git_commit": track.git_commit(), "device": str(device),
            "model": cfg.model.name, "corruption": f"{corruption.kind}@{corruption.level:g}",
            "sweep_dir": hctx.get("sweep_dir", ""), "job_num": hctx.get("job_num", 0),
            "overrides": " ".join(hctx.get("overrides", [])), "torch": torch.__version__}
    params = track.flatten(cfg) | {"num_params": count_params(model),
                                   "train_examples": len(corrupted.train_y), "test_examples": len(corrupted.test_y)}
    params |= {f"choice.{k}": v for k, v in hctx.get("choices", {}).items()}

    with track.start_run(uri, experiment_id, name, tags) as job:
        job.log_params(params)
        job.log_dict(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
        job.log_dict({"overrides": hctx.get("overrides", []), "choices": hctx.get("choices", {})}, "overrides.yaml")
        log.info(" ".join(f"{{:>{len(f.format(0.0 if 'f' in f else 0))}}}".format(h) for _, h, f in COLUMNS))

        def on_epoch(stats: dict) -> None:
            job.log_metrics({k: v for k, v in stats.items() if k not in ("step",)}, step=stats["step"])
            log.info(" ".join(f.format(stats[k]) for k, _, f in COLUMNS))

        result = train(model, corrupted, settings, on_epoch)
        final: dict[str, float] = {"wall_time": time.perf_counter() - t0, "train_time": result.train_time,
                                   "images_per_s": result.images_per_s, "epochs": result.epochs, "steps": result.steps,
                                   "tracking_seconds": job.log_seconds}
        if result.fit_epoch is not None:
            final |= {"fit_epoch": result.fit_epoch, "fit_step": result.fit_step}
        for thr in FIT_THRESHOLDS:
            if thr in result.reached:
                tag = f"{thr * 100:g}".replace(".", "_")
                final |= {f"epochs_to_{tag}": result.reached[thr][0], f"steps_to_{tag}": result.reached[thr][1]}
        job.log_metrics(final, step=result.steps)
        job.set_tags({"stop_reason": result.stop_reason})
        last = result.history[-1]
        job.log_dict(last | final | {"stop_reason": result.stop_reason}, "final_metrics.json")
        fig = plots.learning_curve(result.history, name)
        job.log_figure(fig, "learning_curve.png")
        plots.close(fig)
    log.info("%s: stopped (%s) after %d epochs: train acc %.4f, test acc %.4f, %.0f images/s, %.1fs",
             name, result.stop_reason, result.epochs, last["train/acc"], last["test/acc"],
             result.images_per_s, final["wall_time"])
    return {k: float(v) for k, v in (last | final).items()}
