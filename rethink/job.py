"""One training job: compose -> data -> corrupt -> model -> train -> track, through `rethink.runner`."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rethink import identity, runner, track
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
                 random_crop=r.random_crop, flip=r.flip, crop_size=cfg.dataset.crop_size, seed=cfg.seed)


def run_name(model: str, kind: str, level: float, regularizer: dict[str, Any], seed: int) -> str:
    """A readable, explicit MLflow run name, e.g. `mlp_1x512-labels0.5-wd+crop-s0`.

    Built from the values, not Hydra's choices: a `row=` config overrides the regularizer group
    from its own defaults list, which `hydra.runtime.choices` does not show.
    """
    regs = "+".join(name for name, on in (("wd", regularizer.get("weight_decay", 0) > 0),
                                          ("crop", regularizer.get("random_crop")), ("flip", regularizer.get("flip")),
                                          ("dropout", regularizer.get("dropout", 0) > 0)) if on) or "none"
    return f"{model}-{kind}{float(level):g}-{regs}-s{seed}"


def summary_metrics(result) -> dict[str, float]:
    """A finished training's summary: epochs, steps, the fit and the steps to 99 % / 99.9 %."""
    from rethink.progress import FIT_THRESHOLDS

    out: dict[str, float] = {"epochs": result.epochs, "steps": result.steps, "images_per_s": result.images_per_s}
    if result.fit_epoch is not None:
        out |= {"fit_epoch": result.fit_epoch, "fit_step": result.fit_step}
    for thr in FIT_THRESHOLDS:
        if thr in result.reached:
            tag = f"{thr * 100:g}".replace(".", "_")
            out |= {f"epochs_to_{tag}": result.reached[thr][0], f"steps_to_{tag}": result.reached[thr][1]}
    return out


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (skipped if already FINISHED, resumed
    from its checkpoint if interrupted)."""
    dataset = build(cfg.dataset)  # the specs check their values: bad input stops here, before any I/O
    corruption = build(cfg.corruption)
    settings = train_settings(cfg)
    spec = runner.JobSpec(uri=track.tracking_uri(cfg), experiment=cfg.mlflow.experiment,
                          identity=identity.config_hash(cfg), rerun=bool(cfg.rerun), resumable=True,
                          checkpoint_dir=cfg.paths.checkpoints)

    def prepare() -> runner.Plan:
        import torch

        from rethink.models import count_params
        from rethink.runtime import resolve_runtime

        t0 = time.perf_counter()
        corrupted = corruption.apply(dataset.load())
        # An image tree may leave these null: the model is built for what the data holds (the
        # identity, computed above from the config as given, does not change).
        cfg.dataset.num_classes, cfg.dataset.input_shape = dataset.num_classes, list(dataset.input_shape)
        torch.manual_seed(int(cfg.seed))
        model = build(cfg.model.net)
        hctx = runner.hydra_context()
        runtime = resolve_runtime(settings, model, int(hctx.get("job_num", 0)))
        name = run_name(cfg.model.name, corruption.kind, corruption.level, cfg.regularizer, cfg.seed)
        log.info("%s: %d training / %d test images, %d params, %s, %.0f%% of training examples changed by %s",
                 name, len(corrupted.train_y), len(corrupted.test_y), count_params(model), runtime.device,
                 100 * float(corrupted.changed.float().mean()), corruption.kind)
        if hctx.get("choices", {}).get("scale") == "cpu":
            log.info("scale=cpu (reduced): a stratified subset of the training set and the paper's per-step LR "
                     "schedule; add scale=paper for the full data set and per-epoch decay")
        params = identity.flatten(cfg) | {"num_params": count_params(model), "train_examples": len(corrupted.train_y),
                                          "test_examples": len(corrupted.test_y)}
        params |= {f"choice.{k}": v for k, v in hctx.get("choices", {}).items()}
        tags = {"device": str(runtime.device), "model": cfg.model.name, "corruption": f"{corruption.kind}@{corruption.level:g}",
                "torch": torch.__version__}
        artifacts = {"config.yaml": OmegaConf.to_container(cfg, resolve=True),
                     "overrides.yaml": {"overrides": hctx.get("overrides", []), "choices": hctx.get("choices", {})}}
        return runner.Plan(name, lambda ctx: train_body(ctx, name, model, corrupted, settings, runtime, t0),
                           params, tags, artifacts)

    return runner.run_job(spec, prepare)


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


def train_body(ctx: runner.JobContext, name: str, model, corrupted, settings, runtime, t0: float) -> dict[str, float]:
    """Train, logging each epoch (metrics and a table row) and checkpointing; then the summary."""
    from rethink import plots
    from rethink.train import train

    job, state = ctx.run, ctx.resume_state
    prior_wall = state["wall_time"] if state else 0.0
    log.info(" ".join(f"{{:>{len(f.format('' if 'd' not in f and 'f' not in f else 0))}}}".format(h)
                      for _, h, f in COLUMNS))
    times: list[float] = []

    def on_epoch(stats: dict) -> None:
        job.log_metrics({k: v for k, v in stats.items() if k != "step"}, step=stats["step"])
        times.append(stats["epoch_time"])
        left = settings.max_epochs - stats["epoch"]
        row = stats | {"epoch": f"{stats['epoch']}/{settings.max_epochs}",
                       "eta": duration(left * sum(times) / len(times)) if left else "-"}
        log.info(" ".join(f.format(row[k]) for k, _, f in COLUMNS))

    def on_checkpoint(st: dict) -> None:
        ctx.save_checkpoint(st | {"wall_time": prior_wall + time.perf_counter() - t0})

    result = train(model, corrupted, settings, on_epoch, on_checkpoint, resume=state, runtime=runtime)
    check_complete(job, result.history)
    final = summary_metrics(result) | {"wall_time": prior_wall + time.perf_counter() - t0,
                                       "train_time": result.train_time, "tracking_seconds": job.log_seconds}
    job.log_metrics(final, step=result.steps)
    job.set_tags({"stop_reason": result.stop_reason})
    last = result.history[-1]
    job.log_dict(last | final | {"stop_reason": result.stop_reason}, "final_metrics.json")
    fig = plots.learning_curve(result.history, name)
    job.log_figure(fig, "learning_curve.png")
    plots.close(fig)
    ctx.summary = (f"{name}: stopped ({result.stop_reason}) after {result.epochs} epochs: train acc "
                   f"{last['train/acc']:.4f}, test acc {last['test/acc']:.4f}, {result.images_per_s:.0f} images/s, "
                   f"{final['wall_time']:.1f}s")
    return {k: float(v) for k, v in (last | final).items()}
