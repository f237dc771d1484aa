"""One training job: compose -> data -> corrupt -> model -> fit -> record, through `rethink.run.runner`.

With `trainer.devices=N` every rank runs `run`: rank 0 owns the job (its MLflow run, lock, checkpoints), the others
build the same data and model and train beside it (`rethink.training.distributed`), logging nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rethink import compose
from rethink.errors import RethinkError
from rethink.run import identity, record, runner, track

log = logging.getLogger("rethink")


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (skipped if already FINISHED, resumed from its checkpoint
    if interrupted)."""
    from rethink.training import distributed
    from rethink.training.runtime import resolve_device

    parts = compose.job_parts(cfg)  # the specs check their values: bad input stops here, before any I/O
    if parts.settings.devices > 1 and not parts.dataset.streamed:
        raise RethinkError(f"trainer.devices={parts.settings.devices} needs a streamed data set (dataset=imagenet, or "
                           "dataset=imagefolder dataset.stream=true): a data set held on one device trains there; run "
                           "several such jobs at once with hydra/launcher=packed or joblib")
    group = distributed.Group()
    group.start(parts.settings.devices, run_rank, OmegaConf.to_container(cfg, resolve=False),
                cuda=resolve_device(parts.settings.device).type == "cuda")
    ok = False
    try:
        with distributed.current_group(group):
            result = run_as_rank0(cfg, parts) if distributed.world().main else run_as_other_rank(cfg, parts)
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


def run_rank(cfg_container: dict) -> None:
    """A rank spawned by `rethink.training.distributed` (its entry): the job from its config."""
    run(OmegaConf.create(cfg_container))


def build_model(cfg: DictConfig, num_classes: int, input_shape: tuple[int, ...]) -> Any:
    """The network of `model.net`, seeded by `seed`, for the data's class count and input shape: passed to the
    builder (for the keys `num_classes` / `in_shape` its config names), not written into the config."""
    import torch

    derived = {"num_classes": num_classes, "in_shape": list(input_shape)}
    torch.manual_seed(int(cfg.seed))
    return compose.build(cfg.model.net, **{k: v for k, v in derived.items() if k in cfg.model.net})


def run_as_other_rank(cfg: DictConfig, parts: compose.JobParts) -> dict[str, float]:
    """A rank other than 0: build the same data and model, wait for rank 0's word, train beside it; log nothing."""
    from rethink.run import lifecycle
    from rethink.training import distributed
    from rethink.training.fit import fit
    from rethink.training.runtime import resolve_runtime

    data = parts.dataset.load()
    corrupted = parts.corruption.apply(data)
    model = build_model(cfg, parts.dataset.num_classes, parts.dataset.input_shape)
    word = distributed.await_release()
    rank = distributed.world().rank
    if not word["train"]:
        log.info("rank %d: not training: %s", rank, word["why"])
        return {}
    resume = lifecycle.load_checkpoint(Path(word["checkpoint"])) if word["checkpoint"] else None
    result = fit(model, corrupted, parts.settings, resume=resume, runtime=resolve_runtime(parts.settings, model))
    log.info("rank %d: trained %d epochs beside rank 0", rank, result.epochs)
    return {}


def run_as_rank0(cfg: DictConfig, parts: compose.JobParts) -> dict[str, float]:
    """The job itself (a single process is rank 0): identity, skip or resume, prepare, train, track."""
    spec = runner.JobSpec(uri=track.tracking_uri(cfg), experiment=cfg.mlflow.experiment,
                          identity=identity.config_hash(cfg), rerun=bool(cfg.rerun), resumable=True,
                          checkpoint_dir=cfg.paths.checkpoints)
    return runner.run_job(spec, lambda: prepare(cfg, parts))


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


def prepare(cfg: DictConfig, parts: compose.JobParts) -> runner.Plan:
    """Load and corrupt the data, build the model, resolve the runtime; what the run records about itself."""
    from rethink.models import count_params
    from rethink.training.runtime import resolve_runtime

    t0 = time.perf_counter()
    dataset, corruption, settings = parts.dataset, parts.corruption, parts.settings
    data = dataset.load()
    corrupted = corruption.apply(data)
    model = build_model(cfg, dataset.num_classes, dataset.input_shape)
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
    params = record.params(cfg, corruption) | {"num_params": count_params(model), "train_examples": len(corrupted.train_y),
                                               "test_examples": len(corrupted.test_y)}
    note = record.description(cfg, corruption, len(corrupted.train_y), tags)
    if settings.devices > 1:
        tags["devices"] = settings.devices
    tags |= {"device": runtime.describe(), "model": cfg.model.name, "corruption": f"{corruption.kind}@{corruption.level:g}",
             "num_classes": dataset.num_classes, "input_shape": list(dataset.input_shape), track.NOTE: note} \
        | runtime.versions()
    artifacts = {"config.yaml": OmegaConf.to_container(cfg, resolve=True),
                 "overrides.yaml": {"overrides": hctx.get("overrides", []), "choices": hctx.get("choices", {})}}
    system_metrics = cfg.mlflow.get("system_metrics", "auto")
    watch = runtime.device.type == "cuda" if system_metrics == "auto" else bool(system_metrics)
    prepared = Prepared(name, note, tags["scale"], model, corrupted, settings, runtime, t0, watch)
    return runner.Plan(name, lambda ctx: train_body(ctx, prepared), params, tags, artifacts,
                       record.dataset_inputs(cfg, corruption, data, corrupted))


def train_body(ctx: runner.JobContext, p: Prepared) -> dict[str, float]:
    """Train, logging each epoch (metrics and a table row) and checkpointing; then the summary, also
    as a table in the run's description so its page shows the numbers at a glance."""
    from rethink import plots
    from rethink.jobs.epoch_table import EpochTable, header
    from rethink.jobs.outcome import check_complete, results_table, summary_metrics
    from rethink.training import distributed, pack
    from rethink.training.fit import fit

    name, note, settings, t0 = p.name, p.note, p.settings, p.t0
    job, state = ctx.run, ctx.resume_state
    prior_wall = state["wall_time"] if state else 0.0
    pack.announce(job.run_id)
    who = f"{name} | " if pack.current() else ""  # a pack's members log in turn: say whose row it is
    log.info(who + header())
    table = EpochTable(settings.max_epochs)

    def on_epoch(stats: dict) -> None:
        job.log_metrics({k: v for k, v in stats.items() if k != "step"}, step=stats["step"])
        log.info(who + table.row(stats))

    def on_checkpoint(st: dict) -> None:
        ctx.save_checkpoint(st | {"wall_time": prior_wall + time.perf_counter() - t0})

    distributed.release(train=True, checkpoint=str(ctx.checkpoint_file) if state and ctx.checkpoint_file else None)
    with job.system_metrics(p.system_metrics):
        result = fit(p.model, p.corrupted, settings, on_epoch, on_checkpoint, resume=state, runtime=p.runtime)
    check_complete(job, result.history)
    if partners := pack.partners():
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
