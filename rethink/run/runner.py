"""The job skeleton every job runs through (training, theory, imported records):
identity -> skip if FINISHED -> resume if interrupted -> prepare -> run -> end.

A job supplies a `JobSpec` (where it logs, who it is) and a `prepare()` that loads and checks its
inputs and returns a `Plan` (run name, params, tags, and the body that does the work). Bad input
raised in `prepare()` therefore never leaves a run behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rethink.run import lifecycle, open_run, track

log = logging.getLogger("rethink")


@dataclass
class JobSpec:
    """Where a job logs and who it is; known before anything is loaded."""

    uri: str
    experiment: str
    identity: str
    rerun: bool = False  # train again even if FINISHED, and do not resume
    resumable: bool = False  # keeps checkpoints under `checkpoint_dir` (training jobs)
    checkpoint_dir: str | None = None


@dataclass
class JobContext:
    """What the body of a job gets: its open run and, when resumed, the state to continue from."""

    run: open_run.JobRun
    identity: str
    resume_state: dict | None = None
    checkpoint_file: Path | None = None
    summary: str = ""  # the body's closing line, logged once the run has ended FINISHED

    def save_checkpoint(self, state: dict) -> None:
        """Atomically write the state a re-run resumes from (tagged with this run and identity).

        The metrics logged so far are confirmed written first: a checkpoint never claims epochs
        whose metrics could still be lost, so a run resumed from it has no gap in its history."""
        if self.checkpoint_file is not None:
            self.run.flush()
            lifecycle.save_checkpoint(self.checkpoint_file, state | {"run_id": self.run.run_id,
                                                                      "config_hash": self.identity})


@dataclass
class Plan:
    """A prepared job: what its run is called and records, and the body that does the work."""

    name: str
    body: Callable[[JobContext], dict[str, float]]
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # path -> object for log_dict
    inputs: list[dict[str, str]] = field(default_factory=list)  # dataset inputs (open_run.JobRun.log_inputs)


def hydra_context() -> dict[str, Any]:
    """Sweep dir, job number, overrides and group choices (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return {"sweep_dir": hc.sweep.dir if hc.mode.name == "MULTIRUN" else hc.run.dir,
            "job_num": hc.job.get("num", 0), "overrides": list(hc.overrides.task),
            "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")},
            "swept": list(hc.sweeper.get("params") or {})}  # the keys a preset sweeps (hydra.sweeper.params)


def run_job(spec: JobSpec, prepare: Callable[[], Plan]) -> dict[str, float]:
    """Run one job and return its metrics: those of the identical FINISHED run when there is one
    (unless rerun), else the body's, in a new run or in the interrupted run it resumes. The job's
    identity is claimed first (`lifecycle.claim`): an identical job running now is an error."""
    hctx = hydra_context()
    job_num = hctx.get("job_num", 0)
    experiment_id = track.ensure_experiment(spec.uri, spec.experiment)
    parent = lifecycle.parent_run_id(hctx.get("sweep_dir", ""))
    where = lifecycle.checkpoint_dir(spec.uri, spec.checkpoint_dir)
    with nullcontext() if spec.rerun else lifecycle.claim(where, spec.identity):
        if not spec.rerun and (done := lifecycle.find_finished(spec.uri, experiment_id, spec.identity)):
            log.info("skip: an identical job (config %s) already FINISHED as run %s in experiment %r; rerun=true "
                     "runs it again", spec.identity, done["run_id"], spec.experiment)
            if parent:
                track.set_run_tags(spec.uri, parent, {f"skipped.{job_num}": done["run_id"]})
            return done["metrics"]
        ckpt = where / f"{spec.identity}.pt" if spec.resumable else None
        if ckpt:
            lifecycle.remove_stale_tmp(where)
        resume = lifecycle.find_resumable(spec.uri, experiment_id, spec.identity, ckpt) if ckpt and not spec.rerun else None

        plan = prepare()
        tags = {"config_hash": spec.identity, "git_commit": track.git_commit(), "sweep_dir": hctx.get("sweep_dir", ""),
                "job_num": job_num, "overrides": " ".join(hctx.get("overrides", [])),
                "process": lifecycle.process_id()} | plan.tags
        if parent:
            tags["mlflow.parentRunId"] = parent  # how MLflow nests a sweep's jobs under its parent run
        if resume:
            tags |= {"resumed_from_epoch": resume.state["epoch"],
                     "resumes": int(resume.run.data.tags.get("resumes", 0)) + 1}
            log.info("%s: resuming run %s (%s) from its checkpoint after epoch %d", plan.name, resume.run.info.run_id,
                     resume.run.info.status, resume.state["epoch"])
        with open_run.start_run(spec.uri, experiment_id, plan.name, tags,
                             resume_run_id=resume.run.info.run_id if resume else None) as run:
            if not resume:  # a resumed run has them (and MLflow refuses to change a param's value)
                run.log_params(plan.params)
                if plan.inputs:
                    run.log_inputs(plan.inputs)
            for path, obj in plan.artifacts.items():
                run.log_dict(obj, path)
            log.info("%s: MLflow run %s, %s", plan.name, run.run_id, track.run_link(spec.uri, experiment_id, run.run_id))
            ctx = JobContext(run, spec.identity, resume.state if resume else None, ckpt)
            result = plan.body(ctx)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)  # the run is FINISHED: nothing left to resume
    if ctx.summary:
        log.info("%s (run %s FINISHED)", ctx.summary, run.run_id)
    return result
