"""One training job: compose -> data -> corrupt -> model -> train -> track, through `rethink.runner`."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rethink import identity, record, runner, track
from rethink.errors import IncompleteRunError, RethinkError

log = logging.getLogger("rethink")

# The per-epoch table: (key of the row, header, format). `epoch` reads N/max; `eta` is the time to
# max_epochs at the mean epoch time so far (an upper bound when the job stops at the target).
COLUMNS = [("epoch", "epoch", "{:>9}"), ("step", "step", "{:>7d}"), ("lr", "lr", "{:>8.5f}"),
           ("train/loss", "loss", "{:>8.4f}"), ("train/acc", "train_acc", "{:>9.4f}"),
           ("test/acc", "test_acc", "{:>8.4f}"), ("generalization_gap", "gap", "{:>7.4f}"),
           ("epoch_time", "sec", "{:>6.2f}"), ("eta", "eta", "{:>8}")]


def duration(seconds: float) -> str:
    """E.g. `42s`, `3m05s`, `1h02m`: short enough for a table column."""
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def build(target_cfg: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, surfacing our own one-line errors instead of Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(target_cfg, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, RethinkError):
            raise e.__cause__ from None
        raise


def train_settings(cfg: DictConfig):
    """The `trainer` node (`_target_: TrainSettings`) plus the regularizer switches the loop needs."""
    r = cfg.regularizer
    return build(cfg.trainer, weight_decay=r.weight_decay, weight_decay_on=r.weight_decay_on,
                 random_crop=r.random_crop, flip=r.flip, rotate=r.rotate, crop_size=cfg.dataset.crop_size, seed=cfg.seed)


def summary_metrics(result) -> dict[str, float]:
    """A finished training's summary: epochs, steps, the fit, the steps to 99 % / 99.9 %, and the best
    test accuracy along the way (with its step, and best - final: what early stopping would gain)."""
    from rethink.progress import FIT_THRESHOLDS

    out: dict[str, float] = {"epochs": result.epochs, "steps": result.steps, "images_per_s": result.images_per_s}
    tested = [h for h in result.history if "test/acc" in h]
    if tested:
        best = max(tested, key=lambda h: h["test/acc"])
        out |= {"best_test_acc": best["test/acc"], "best_test_acc_step": best["step"],
                "early_stopping_gain": round(best["test/acc"] - tested[-1]["test/acc"], 12)}
        if "test/top5" in best:  # ImageNet: the paper's parentheses give the best top-5 too
            out["best_test_top5"] = max(h["test/top5"] for h in tested)
    if result.fit_epoch is not None:
        out |= {"fit_epoch": result.fit_epoch, "fit_step": result.fit_step}
    for thr in FIT_THRESHOLDS:
        if thr in result.reached:
            tag = f"{thr * 100:g}".replace(".", "_")
            out |= {f"epochs_to_{tag}": result.reached[thr][0], f"steps_to_{tag}": result.reached[thr][1]}
    return out


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (skipped if already FINISHED, resumed
    from its checkpoint if interrupted). With `trainer.devices=N` every rank runs this: rank 0 owns the
    job (its MLflow run, lock, checkpoints), the others train beside it (`rethink.distributed`)."""
    from rethink import distributed
    from rethink.data import is_streamed
    from rethink.runtime import resolve_device

    dataset = build(cfg.dataset)  # the specs check their values: bad input stops here, before any I/O
    corruption = build(cfg.corruption)
    settings = train_settings(cfg)
    if settings.devices > 1 and not is_streamed(cfg.dataset):
        raise RethinkError(f"trainer.devices={settings.devices} needs a streamed data set (dataset=imagenet, or "
                           "dataset=imagefolder dataset.stream=true): a data set held on one device trains there; run "
                           "several such jobs at once with hydra/launcher=packed or joblib")
    group = distributed.Group()
    group.start(settings.devices, OmegaConf.to_container(cfg, resolve=False),
                cuda=resolve_device(settings.device).type == "cuda")
    ok = False
    try:
        with distributed.current_group(group):
            result = run_as_rank0(cfg, dataset, corruption, settings) if distributed.world().main \
                else run_as_other_rank(cfg, dataset, corruption, settings)
        ok = True
        return result
    except Exception as e:
        if failed := group.failed_ranks():  # say which rank failed, not only that rank 0 lost its peer
            raise RethinkError(f"rank {failed[0][0]} of the job failed (exit code {failed[0][1]}; its traceback is "
                               f"above): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        raise
    finally:
        group.release(train=False, why="rank 0 ended the job before training (skipped, failed or interrupted)")
        group.close(ok)


def run_as_other_rank(cfg: DictConfig, dataset, corruption, settings) -> dict[str, float]:
    """A rank other than 0: build the same data and model, wait for rank 0's word, train beside it; log nothing."""
    import torch

    from rethink import distributed, lifecycle
    from rethink.runtime import resolve_runtime
    from rethink.train import train

    data = dataset.load()
    corrupted = corruption.apply(data)
    cfg.dataset.num_classes, cfg.dataset.input_shape = dataset.num_classes, list(dataset.input_shape)
    torch.manual_seed(int(cfg.seed))
    model = build(cfg.model.net)
    word = distributed.await_release()
    rank = distributed.world().rank
    if not word["train"]:
        log.info("rank %d: not training: %s", rank, word["why"])
        return {}
    resume = lifecycle.load_checkpoint(Path(word["checkpoint"])) if word["checkpoint"] else None
    result = train(model, corrupted, settings, resume=resume, runtime=resolve_runtime(settings, model))
    log.info("rank %d: trained %d epochs beside rank 0", rank, result.epochs)
    return {}


def run_as_rank0(cfg: DictConfig, dataset, corruption, settings) -> dict[str, float]:
    """The job itself (a single process is rank 0): identity, skip or resume, prepare, train, track."""
    spec = runner.JobSpec(uri=track.tracking_uri(cfg), experiment=cfg.mlflow.experiment,
                          identity=identity.config_hash(cfg), rerun=bool(cfg.rerun), resumable=True,
                          checkpoint_dir=cfg.paths.checkpoints)

    def prepare() -> runner.Plan:
        import torch

        from rethink.models import count_params
        from rethink.runtime import resolve_runtime

        t0 = time.perf_counter()
        data = dataset.load()
        corrupted = corruption.apply(data)
        # An image tree may leave these null: the model is built for what the data holds (the
        # identity, computed above from the config as given, does not change).
        cfg.dataset.num_classes, cfg.dataset.input_shape = dataset.num_classes, list(dataset.input_shape)
        cfg.corruption.level = corruption.level  # a float, also when given as `corruption.level=1`
        torch.manual_seed(int(cfg.seed))
        model = build(cfg.model.net)
        hctx = runner.hydra_context()
        runtime = resolve_runtime(settings, model, int(hctx.get("job_num", 0)))
        tags = record.purpose(hctx)
        name = record.run_name(cfg.model.name, corruption.kind, corruption.level, cfg.regularizer, cfg.seed, tags["scale"])
        log.info("%s: %d training / %d test images, %d params, %s, %.0f%% of training examples changed by %s",
                 name, len(corrupted.train_y), len(corrupted.test_y), count_params(model), runtime.device,
                 100 * float(corrupted.changed.float().mean()), corruption.kind)
        if tags["scale"] == "cpu":
            log.info("scale=cpu (reduced): a stratified subset of the training set and model %s's CPU budget "
                     "(model.cpu); add scale=paper for the full data set and the paper's budget", cfg.model.name)
        if tags["budget"] == "custom":
            log.info("budget: custom (%s): the report leaves this run out of the paper's tables", tags["budget_overrides"])
        params = record.params(cfg) | {"num_params": count_params(model), "train_examples": len(corrupted.train_y),
                                       "test_examples": len(corrupted.test_y)}
        note = record.description(cfg, corruption.kind, corruption.level, len(corrupted.train_y), tags)
        if settings.devices > 1:
            tags["devices"] = settings.devices
        tags |= {"device": runtime.describe(), "model": cfg.model.name, "corruption": f"{corruption.kind}@{corruption.level:g}",
                 track.NOTE: note} | runtime.versions()
        artifacts = {"config.yaml": OmegaConf.to_container(cfg, resolve=True),
                     "overrides.yaml": {"overrides": hctx.get("overrides", []), "choices": hctx.get("choices", {})}}
        system_metrics = cfg.mlflow.get("system_metrics", "auto")
        watch = runtime.device.type == "cuda" if system_metrics == "auto" else bool(system_metrics)
        prepared = Prepared(name, note, tags["scale"], model, corrupted, settings, runtime, t0, watch)
        return runner.Plan(name, lambda ctx: train_body(ctx, prepared), params, tags, artifacts,
                           record.dataset_inputs(cfg, data, corrupted))

    return runner.run_job(spec, prepare)


def results_table(last: dict, final: dict, stop_reason: str) -> str:
    """The run's outcome as a small Markdown table (the run page shows its description rendered)."""
    fit = f"epoch {final['fit_epoch']:.0f} (step {final['fit_step']:.0f})" if "fit_epoch" in final else "not reached"
    rows = [("train accuracy", f"{100 * last['train/acc']:.2f} %"), ("test accuracy", f"{100 * last['test/acc']:.2f} %"),
            ("generalization gap", f"{100 * last['generalization_gap']:.2f} points"), ("target train accuracy reached", fit),
            ("stopped", f"{stop_reason} after {final['epochs']:.0f} epochs, {final['steps']:.0f} steps"),
            ("wall time", duration(final["wall_time"]))]
    return "| result | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def check_complete(job: track.JobRun, history: list[dict]) -> None:
    """Refuse to finish a run whose per-epoch metrics have gaps in the store (a FINISHED run is a
    promise that its history is complete)."""
    expected: dict[str, list[int]] = {}
    for h in history:
        for k, v in h.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                expected.setdefault(k, []).append(h["step"])
    if missing := job.missing_steps(expected):
        key, steps = next(iter(missing.items()))
        raise IncompleteRunError(f"{sum(map(len, missing.values()))} metric values missing from the store "
                                 f"(e.g. {key} at steps {steps[:5]}): the run cannot end FINISHED")


@dataclass
class Prepared:
    """What `prepare()` hands the body: the run's name and description, the built model, the data."""

    name: str
    note: str
    scale: str
    model: Any
    corrupted: Any
    settings: Any
    runtime: Any
    t0: float  # when preparing started: the run's wall time counts it
    system_metrics: bool = False


def train_body(ctx: runner.JobContext, p: Prepared) -> dict[str, float]:
    """Train, logging each epoch (metrics and a table row) and checkpointing; then the summary, also
    as a table in the run's description so its page shows the numbers at a glance."""
    from rethink import distributed, packing, plots
    from rethink.train import train

    name, note, settings, t0 = p.name, p.note, p.settings, p.t0
    job, state = ctx.run, ctx.resume_state
    prior_wall = state["wall_time"] if state else 0.0
    packing.announce(job.run_id)
    who = f"{name} | " if packing.current() else ""  # a pack's members log in turn: say whose row it is
    log.info(who + " ".join(f"{{:>{len(f.format('' if 'd' not in f and 'f' not in f else 0))}}}".format(h)
                            for _, h, f in COLUMNS))
    times: list[float] = []

    def on_epoch(stats: dict) -> None:
        job.log_metrics({k: v for k, v in stats.items() if k != "step"}, step=stats["step"])
        times.append(stats["epoch_time"])
        left = settings.max_epochs - stats["epoch"]
        row = stats | {"epoch": f"{stats['epoch']}/{settings.max_epochs}",
                       "eta": duration(left * sum(times) / len(times)) if left else "-"}
        log.info(who + " ".join(f.format(row[k]) for k, _, f in COLUMNS))

    def on_checkpoint(st: dict) -> None:
        ctx.save_checkpoint(st | {"wall_time": prior_wall + time.perf_counter() - t0})

    distributed.release(train=True, checkpoint=str(ctx.checkpoint_file) if state and ctx.checkpoint_file else None)
    with job.system_metrics(p.system_metrics):
        result = train(p.model, p.corrupted, settings, on_epoch, on_checkpoint, resume=state, runtime=p.runtime)
    check_complete(job, result.history)
    if partners := packing.partners():
        job.set_tags({"packed_with": ",".join(partners)})
    final = summary_metrics(result) | {"wall_time": prior_wall + time.perf_counter() - t0,
                                       "train_time": result.train_time, "tracking_seconds": job.log_seconds}
    job.log_metrics(final, step=result.steps)
    last = result.history[-1]
    job.set_tags({"stop_reason": result.stop_reason, track.NOTE: note + "\n\n" + results_table(last, final, result.stop_reason)})
    job.log_dict(last | final | {"stop_reason": result.stop_reason}, "final_metrics.json")
    with plots.DRAWING:
        fig = plots.learning_curve(result.history, name, scale=p.scale, train_size=len(p.corrupted.train_y),
                                   num_classes=p.corrupted.num_classes)
        job.log_figure(fig, "learning_curve.png")
        plots.close(fig)
    ctx.summary = (f"{name}: stopped ({result.stop_reason}) after {result.epochs} epochs: train acc "
                   f"{last['train/acc']:.4f}, test acc {last['test/acc']:.4f}, {result.images_per_s:.0f} images/s, "
                   f"{final['wall_time']:.1f}s")
    return {k: float(v) for k, v in (last | final).items()}
