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
from rethink.runtime import resolve_runtime
from rethink.train import (
    FIT_THRESHOLDS,
    TrainSettings,
    load_checkpoint,
    save_checkpoint,
    train,
)

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
    """A readable, explicit MLflow run name, e.g. `mlp_1x512-labels0.5-wd+crop-s0`.

    Built from the values, not Hydra's choices: a `row=` config overrides the regularizer group
    from its own defaults list, which `hydra.runtime.choices` does not show.
    """
    r = cfg.regularizer
    regs = "+".join(name for name, on in (("wd", r.weight_decay > 0), ("crop", r.random_crop), ("flip", r.flip),
                                          ("dropout", r.dropout > 0)) if on) or "none"
    return f"{cfg.model.name}-{cfg.corruption.kind}{float(cfg.corruption.level):g}-{regs}-s{cfg.seed}"


def find_resumable(cfg: DictConfig, uri: str, experiment_id: str, identity: str, ckpt_file) -> tuple[Any, dict | None]:
    """The interrupted run of this job (RUNNING with its process gone, FAILED or KILLED) that the
    checkpoint belongs to, and that checkpoint; (None, None) to start afresh. Stale RUNNING runs
    that cannot be continued are marked KILLED."""
    if cfg.rerun:
        return None, None
    unfinished = track.unfinished_runs(uri, experiment_id, identity)
    if live := [r for r in unfinished if r.info.status == "RUNNING" and not track.is_stale(r)]:
        raise RethinkError(f"an identical job (config {identity}) is running now as run {live[0].info.run_id} "
                           f"(process {live[0].data.tags.get('process')}): wait for it, or rerun=true to train a second copy")
    state = load_checkpoint(ckpt_file) if unfinished else None
    resumed = next((r for r in unfinished if state and r.info.run_id == state.get("run_id")), None)
    for r in unfinished:
        if r is not resumed and r.info.status == "RUNNING":
            track.mark_killed(uri, r.info.run_id, "its process is gone (killed?) and it left no checkpoint to resume; "
                                                  "the job was trained again in a new run")
    return resumed, state if resumed else None


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (skipped if already FINISHED, resumed
    from its checkpoint if interrupted)."""
    dataset: DatasetSpec = build(cfg.dataset)
    corruption: Corruption = build(cfg.corruption)
    settings = train_settings(cfg)
    hctx = hydra_context()
    uri = track.tracking_uri(cfg)
    experiment_id = track.ensure_experiment(uri, cfg.mlflow.experiment)
    identity = track.config_hash(cfg)
    parent = track.parent_run_id(hctx.get("sweep_dir", ""))
    if not cfg.rerun and (done := track.find_finished(uri, experiment_id, identity)):
        log.info("skip: an identical job (config %s) already FINISHED as run %s; rerun=true trains again",
                 identity, done["run_id"])
        if parent:
            track.set_run_tags(uri, parent, {f"skipped.{hctx.get('job_num', 0)}": done["run_id"]})
        return done["metrics"]
    ckpt_file = track.checkpoint_dir(uri, cfg.get("checkpoint_dir")) / f"{identity}.pt"
    resumed, state = find_resumable(cfg, uri, experiment_id, identity, ckpt_file)

    t0 = time.perf_counter()
    data = dataset.load()
    corrupted = corruption.apply(data)
    torch.manual_seed(int(cfg.seed))
    model = build(cfg.model.net)
    runtime = resolve_runtime(settings, model, int(hctx.get("job_num", 0)))
    settings.device = str(runtime.device)
    name = run_name(cfg, hctx.get("choices", {}))
    log.info("%s: %d training / %d test images, %d params, %s, %.0f%% of training examples changed by %s",
             name, len(corrupted.train_y), len(corrupted.test_y), count_params(model), runtime.device,
             100 * float(corrupted.changed.float().mean()), corruption.kind)
    if hctx.get("choices", {}).get("scale") == "cpu":
        log.info("scale=cpu (reduced): a stratified subset of the training set and the paper's per-step LR "
                 "schedule; add scale=paper for the full data set and per-epoch decay")

    tags = {"config_hash": identity, "git_commit": track.git_commit(), "device": str(runtime.device),
            "model": cfg.model.name, "corruption": f"{corruption.kind}@{corruption.level:g}",
            "sweep_dir": hctx.get("sweep_dir", ""), "job_num": hctx.get("job_num", 0),
            "overrides": " ".join(hctx.get("overrides", [])), "torch": torch.__version__}
    if parent:
        tags["mlflow.parentRunId"] = parent  # how MLflow nests a sweep's jobs under its parent run
    if resumed:
        tags |= {"resumed_from_epoch": state["epoch"], "resumes": int(resumed.data.tags.get("resumes", 0)) + 1}
        log.info("%s: resuming run %s (%s) from its checkpoint after epoch %d", name, resumed.info.run_id,
                 resumed.info.status, state["epoch"])
    params = track.flatten(cfg) | {"num_params": count_params(model),
                                   "train_examples": len(corrupted.train_y), "test_examples": len(corrupted.test_y)}
    params |= {f"choice.{k}": v for k, v in hctx.get("choices", {}).items()}

    with track.start_run(uri, experiment_id, name, tags, resume_run_id=resumed.info.run_id if resumed else None) as job:
        if not resumed:  # a resumed run has them (and MLflow refuses to change a param's value)
            job.log_params(params)
        job.log_dict(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
        job.log_dict({"overrides": hctx.get("overrides", []), "choices": hctx.get("choices", {})}, "overrides.yaml")
        log.info(" ".join(f"{{:>{len(f.format(0.0 if 'f' in f else 0))}}}".format(h) for _, h, f in COLUMNS))

        def on_epoch(stats: dict) -> None:
            job.log_metrics({k: v for k, v in stats.items() if k not in ("step",)}, step=stats["step"])
            log.info(" ".join(f.format(stats[k]) for k, _, f in COLUMNS))

        prior_wall = state["wall_time"] if state else 0.0

        def on_checkpoint(st: dict) -> None:
            save_checkpoint(ckpt_file, st | {"run_id": job.run_id, "config_hash": identity,
                                             "wall_time": prior_wall + time.perf_counter() - t0})

        result = train(model, corrupted, settings, on_epoch, on_checkpoint, resume=state, runtime=runtime)
        final: dict[str, float] = {"wall_time": prior_wall + time.perf_counter() - t0, "train_time": result.train_time,
                                   "images_per_s": result.images_per_s, "epochs": result.epochs, "steps": result.steps,
                                   "tracking_seconds": job.log_seconds,
                                   "tracking_write_seconds": job.write_seconds}
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
    if settings.checkpoint_every or resumed:
        ckpt_file.unlink(missing_ok=True)  # the run is FINISHED: nothing left to resume
    log.info("%s: stopped (%s) after %d epochs: train acc %.4f, test acc %.4f, %.0f images/s, %.1fs",
             name, result.stop_reason, result.epochs, last["train/acc"], last["test/acc"],
             result.images_per_s, final["wall_time"])
    return {k: float(v) for k, v in (last | final).items()}
