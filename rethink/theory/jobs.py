"""The theory as Hydra jobs (`task=expressivity|kernel|minnorm`), each one MLflow run.

Runs go to the experiment `<mlflow.experiment>-theory` (e.g. `rethink-theory`), so reports over
training runs never mix them in. A job's identity is the hash of its `task` node (less the keys
that do not change results: device, threads); an identical FINISHED job is skipped unless
rerun=true. Bad values stop with one line (RethinkError) before any run is created: the options
are typed in rethink.theory.options, the three tasks run in rethink.theory.tasks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rethink import plots, track
from rethink.theory.options import TASKS, TaskOptions, parse, validate
from rethink.theory.tasks import Outcome, Runner, expressivity, kernel, minnorm

__all__ = ["EXPERIMENT_SUFFIX", "NON_IDENTITY", "RUNNERS", "TASKS", "Outcome", "identity", "log_history", "run",
           "run_name", "validate"]

log = logging.getLogger("rethink")

EXPERIMENT_SUFFIX = "-theory"
NON_IDENTITY = ("device", "threads")  # task keys that do not change what a theory job computes
RUNNERS: dict[str, Runner] = {"expressivity": expressivity, "kernel": kernel, "minnorm": minnorm}


def identity(task: DictConfig) -> str:
    """The job's config hash: its task node, less the keys that do not change results."""
    node = {k: v for k, v in OmegaConf.to_container(task, resolve=True).items() if k not in NON_IDENTITY}
    return track.config_hash(OmegaConf.create({"task": node}))


def run_name(opts: TaskOptions | Mapping[str, Any]) -> str:
    """E.g. `expressivity-cifar10-random_labels-s0`, `kernel-mnist-raw-n5000-s0`, `minnorm-n100-d1000-zero-s0`."""
    o = parse(opts)
    if o.name == "minnorm":
        return f"minnorm-n{o.n}-d{o.d}-{o.start}-s{o.seed}"
    size = f"-n{o.train_size}" if o.train_size is not None else "-all"
    kind = o.targets if o.name == "expressivity" else f"{o.features}-{o.targets}"
    return f"{o.name}-{o.data}-{kind}{size}-{o.dtype}-s{o.seed}"


# --- the job ---


def log_history(job: track.JobRun, history: dict[str, list[float]]) -> None:
    """Per-step metrics in batches of up to 1000 values (one write per step would be slow)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, values in history.items()
             for step, v in enumerate(values) if math.isfinite(float(v))]
    for i in range(0, len(batch), 1000):
        track.retry(lambda chunk=batch[i : i + 1000]: job.client.log_batch(job.run_id, metrics=chunk), what="log metrics")


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one theory job and return its metrics (skipped if an identical job already FINISHED)."""
    from rethink.job import hydra_context

    opts = validate(cfg.task)
    hctx = hydra_context()
    uri = track.tracking_uri(cfg)
    ident = identity(cfg.task)
    name = run_name(opts)
    experiment = f"{cfg.mlflow.experiment}{EXPERIMENT_SUFFIX}"
    compute, info = RUNNERS[opts["name"]](cfg, opts)  # loads and checks the data: no run yet
    experiment_id = track.ensure_experiment(uri, experiment)
    if not cfg.rerun and (done := track.find_finished(uri, experiment_id, ident)):
        log.info("skip: an identical job (config %s) already FINISHED as run %s in experiment %r; rerun=true "
                 "runs it again", ident, done["run_id"], experiment)
        return done["metrics"]

    tags = {"config_hash": ident, "git_commit": track.git_commit(), "device": info["device"], "task": opts["name"],
            "sweep_dir": hctx.get("sweep_dir", ""), "job_num": hctx.get("job_num", 0),
            "overrides": " ".join(hctx.get("overrides", [])), "torch": torch.__version__, "numpy": np.__version__}
    params = {f"task.{k}": v for k, v in track.flatten(cfg.task).items()} | {"mlflow.experiment": experiment}
    log.info("%s: MLflow experiment %r", name, experiment)
    t0 = time.perf_counter()
    with track.start_run(uri, experiment_id, name, tags) as job:
        job.log_params(params)
        job.log_dict(OmegaConf.to_container(cfg.task, resolve=True), "config.yaml")
        out = compute()
        out.metrics["wall_time"] = time.perf_counter() - t0
        if out.history:
            log_history(job, out.history)
        job.log_metrics(out.metrics, step=max((len(v) - 1 for v in out.history.values()), default=0))
        job.log_dict({"task": opts, "metrics": out.metrics, **out.results}, "results.json")
        for path, fig in out.figures.items():
            job.log_figure(fig, path)
            plots.close(fig)
    log.info("%s: FINISHED in %.1fs", name, out.metrics["wall_time"])
    return {k: float(v) for k, v in out.metrics.items()}
