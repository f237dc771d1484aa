"""Hydra callbacks: prepare the MLflow store in the launching process, before any job starts, and
hold the sweep's parent run (its jobs are the children) from the first job to the last; at the end
the parent run summarises the sweep (rethink.sweep.summary)."""

from __future__ import annotations

import atexit
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rethink.errors import RethinkError
from rethink.run import lifecycle, stores, track

log = logging.getLogger(__name__)
LAUNCHER_ENV = "RETHINK_LAUNCHER"  # `process_id()` of the process that launched the sweep


def check_store(config: DictConfig) -> None:
    """Stop the whole run, with one line, when the store is a malformed or read-only SQLite file.
    (Hydra turns an exception of a callback into a warning and goes on; SystemExit it lets through.)"""
    try:
        stores.check(track.tracking_uri(config))
    except RethinkError as e:
        raise SystemExit(str(e)) from None


class MLflowStoreCallback(Callback):
    """Create the SQLite schema and the experiment once, so parallel jobs never race the migrations;
    open the sweep's parent run and close it at the end with the jobs' outcome counts and a summary."""

    def __init__(self) -> None:
        self.uri: str | None = None
        self.parent_id: str | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_store(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and runs the sweep anyway, without its
        # parent run: stop here instead, loudly (SystemExit passes through Hydra's callback guard).
        check_store(config)
        try:
            self._open(config)
        except Exception as e:
            log.error("could not open the sweep's MLflow store / parent run: %s", str(e).splitlines()[0] if str(e) else e)
            raise SystemExit(1) from e
        os.environ[LAUNCHER_ENV] = lifecycle.process_id()  # job workers end their job if this process dies

    def _open(self, config: DictConfig) -> None:
        uri = track.tracking_uri(config)
        experiment_id = track.ensure_experiment(uri, config.mlflow.experiment)
        log.info("MLflow store %s, experiment %r (id %s)", uri, config.mlflow.experiment, experiment_id)
        sweep_dir = str(config.hydra.sweep.dir)
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=True)
        self.uri = uri
        self.parent_id = lifecycle.open_sweep(uri, experiment_id, sweep_dir, {
            "git_commit": track.git_commit(), "overrides": " ".join(overrides),
            "launcher": config.hydra.launcher.get("_target_", "")})
        # Jobs find the parent through the environment (inherited by joblib / submitit / local Ray
        # workers) or, on other hosts, through the sweep dir.
        here = Path(sweep_dir).resolve()
        os.environ[lifecycle.PARENT_ENV], os.environ[lifecycle.SWEEP_ENV] = self.parent_id, str(here)
        here.mkdir(parents=True, exist_ok=True)
        (here / lifecycle.PARENT_FILE).write_text(self.parent_id + "\n")
        atexit.register(self.close, completed=False)  # a failed job makes the sweep raise: no on_multirun_end
        log.info("sweep parent run %s", self.parent_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.close(completed=True)

    def close(self, completed: bool) -> None:
        """End the parent run FINISHED or FAILED, summarised, and say how many jobs finished, failed, were skipped."""
        if not self.parent_id:
            return
        parent_id, self.parent_id = self.parent_id, None
        try:
            c = lifecycle.close_sweep(self.uri, parent_id, completed, summarize=partial(summarize, self.uri, parent_id))
        except Exception as e:  # never hide the sweep's own error behind this one
            log.error("could not close the sweep's parent run %s: %s", parent_id, e)
            return
        (log.info if c["status"] == "FINISHED" else log.error)(
            "sweep: %d jobs FINISHED, %d FAILED/KILLED, %d skipped (already FINISHED); parent run %s %s",
            c["jobs_finished"], c["jobs_failed"], c["jobs_skipped"], parent_id, c["status"])


def summarize(uri: str, parent_id: str, outcome: dict[str, Any]) -> None:
    """Log the sweep's summary on its parent run (matplotlib and pandas imported only now, at the end)."""
    from rethink.sweep import summary as sweep_summary

    sweep_summary.summarize(uri, parent_id, outcome)
