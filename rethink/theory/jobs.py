"""The theory as Hydra jobs (`task=expressivity|kernel|minnorm`), each one MLflow run.

Runs go to the experiment `<mlflow.experiment>-theory` (e.g. `rethink-theory`), so reports over
training runs never mix them in. A job's identity is the hash of its `task` node (less the keys
that do not change results: device, threads); an identical FINISHED job is skipped unless
rerun=true. Bad values stop with one line (RethinkError) before any run is created: the options
are typed in rethink.theory.options, the three tasks run in rethink.theory.tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rethink import plots
from rethink.run import track
from rethink.run.identity import flatten, task_hash
from rethink.theory.options import TASKS, TaskOptions, parse, validate
from rethink.theory.tasks import Outcome, Runner, expressivity, kernel, minnorm

__all__ = ["EXPERIMENT_SUFFIX", "NON_IDENTITY", "RUNNERS", "TASKS", "Outcome", "identity", "run",
           "run_name", "validate"]

log = logging.getLogger("rethink")

EXPERIMENT_SUFFIX = "-theory"
NON_IDENTITY = ("device", "threads")  # task keys that do not change what a theory job computes
RUNNERS: dict[str, Runner] = {"expressivity": expressivity, "kernel": kernel, "minnorm": minnorm}


def identity(task: DictConfig) -> str:
    """The job's config hash: its task node, less the keys that do not change results."""
    return task_hash(task, NON_IDENTITY)


def run_name(opts: TaskOptions | Mapping[str, Any]) -> str:
    """E.g. `expressivity-cifar10-random_labels-s0`, `kernel-mnist-raw-n5000-s0`, `minnorm-n100-d1000-zero-s0`."""
    o = parse(opts)
    if o.name == "minnorm":
        return f"minnorm-n{o.n}-d{o.d}-{o.start}-s{o.seed}"
    size = f"-n{o.train_size}" if o.train_size is not None else "-all"
    kind = o.targets if o.name == "expressivity" else f"{o.features}-{o.targets}"
    return f"{o.name}-{o.data}-{kind}{size}-{o.dtype}-s{o.seed}"


# --- the job ---


def run(cfg: DictConfig) -> dict[str, float]:
    """Run one theory job and return its metrics (skipped if an identical job already FINISHED)."""
    from rethink.run import runner

    opts = validate(cfg.task)
    experiment = f"{cfg.mlflow.experiment}{EXPERIMENT_SUFFIX}"
    spec = runner.JobSpec(uri=track.tracking_uri(cfg), experiment=experiment, identity=identity(cfg.task),
                          rerun=bool(cfg.rerun))

    def prepare() -> runner.Plan:
        compute, info = RUNNERS[opts["name"]](cfg, opts)  # loads and checks the data: no run yet
        name = run_name(opts)
        log.info("%s: MLflow experiment %r", name, experiment)
        tags = {"device": info["device"], "task": opts["name"], "torch": torch.__version__, "numpy": np.__version__}
        params = {f"task.{k}": v for k, v in flatten(cfg.task).items()} | {"mlflow.experiment": experiment}
        return runner.Plan(name, lambda ctx: body(ctx, name, compute, opts), params, tags,
                           {"config.yaml": OmegaConf.to_container(cfg.task, resolve=True)})

    return runner.run_job(spec, prepare)


def body(ctx, name: str, compute, opts: dict[str, Any]) -> dict[str, float]:
    """Compute, then log the trace, the metrics, results.json and the figures."""
    t0 = time.perf_counter()
    out: Outcome = compute()
    out.metrics["wall_time"] = time.perf_counter() - t0
    ctx.run.log_series(out.history)
    ctx.run.log_metrics(out.metrics, step=max((len(v) - 1 for v in out.history.values()), default=0))
    ctx.run.log_dict({"task": opts, "metrics": out.metrics, **out.results}, "results.json")
    for path, fig in out.figures.items():
        ctx.run.log_figure(fig, path)
        plots.close(fig)
    ctx.summary = f"{name}: FINISHED in {out.metrics['wall_time']:.1f}s"
    return {k: float(v) for k, v in out.metrics.items()}
