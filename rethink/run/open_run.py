"""One open MLflow run as a job writes it: metrics through MLflow's asynchronous logging (`log_batch(...,
synchronous=False)`; a batch that fails there, e.g. SQLite's "database is locked", is written again synchronously
with retries, and one that still fails stops the job), params, tags, dataset inputs, artifacts, system metrics;
and `start_run`, which ends it FINISHED only once every metric is written (FAILED / KILLED with the reason else).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rethink.run.identity import natural
from rethink.run.redact import redact, redact_values
from rethink.run.track import (
    NOTE,
    client,
    create_run,
    end_run,
    get_run,
    metric_history,
    mlflow_uri,
    retry,
    set_run_tags,
)

log = logging.getLogger(__name__)


class JobRun:
    """One open MLflow run: asynchronous metric batches, params, tags, artifacts."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id, self.client = uri, run_id, client(uri)
        self.log_seconds = 0.0  # time the training thread spent handing metrics over
        self.logged_through: dict[str, int] = {}  # resumed run: last step already logged, per metric
        self._pending: list[tuple[list, Any]] = []  # (batch, RunOperations) not yet known to be written

    def _settle(self, wait: bool) -> None:
        """Check the async writes (all, waiting, when `wait`); write a failed batch again with retries."""
        keep = []
        for batch, ops in self._pending:
            # RunOperations offers only a blocking wait(); its futures tell whether the write is done yet
            if not wait and not all(f.done() for f in ops._operation_futures):
                keep.append((batch, ops))
                continue
            try:
                ops.wait()
            except Exception as e:  # the async writer does not retry: do it here, or fail the job
                log.warning("async metric write failed (%s); writing the batch again", str(e).splitlines()[0][:200])
                retry(lambda b=batch: self.client.log_batch(self.run_id, metrics=b), what="log metrics")
        self._pending = keep

    def flush(self) -> None:
        """Wait until every logged metric is in the store; raise if one could not be written."""
        self._settle(wait=True)

    def missing_steps(self, expected: dict[str, list[int]]) -> dict[str, list[int]]:
        """Per metric, the expected steps that are not in the store (after waiting for every write)."""
        self.flush()
        missing = {}
        for key, steps in expected.items():
            have = {step for step, _ in metric_history(self.uri, self.run_id, key)}
            if lost := sorted(set(steps) - have):
                missing[key] = lost
        return missing

    def skip_logged_steps(self) -> None:
        """A resumed run replays the epochs since its last checkpoint: log only steps not yet logged."""
        keys = retry(lambda: self.client.get_run(self.run_id), what="get run").data.metrics
        for k in keys:
            hist = retry(lambda k=k: self.client.get_metric_history(self.run_id, k), what="metric history")
            self.logged_through[k] = max((m.step for m in hist), default=-1)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """All metrics of one step in one asynchronous batch (non-finite values are left out)."""
        t0 = time.perf_counter()
        self._send([(k, v, step) for k, v in metrics.items()])
        self.log_seconds += time.perf_counter() - t0

    def log_series(self, series: dict[str, list[float]]) -> None:
        """Per-step values (step = position in the list), e.g. a theory job's trace, in one batch."""
        self._send([(k, v, step) for k, values in series.items() for step, v in enumerate(values)])

    def _send(self, points: list[tuple[str, Any, int]]) -> None:
        """Queue (key, value, step) points with MLflow's async logging; steps already logged are left out."""
        from mlflow.entities import Metric

        self._settle(wait=False)
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v, step in points
                 if v is not None and math.isfinite(float(v)) and step > self.logged_through.get(k, -1)]
        if not batch:
            return
        for m in batch:
            self.logged_through[m.key] = max(m.step, self.logged_through.get(m.key, -1))
        self._pending.append((batch, self.client.log_batch(self.run_id, metrics=batch, synchronous=False)))

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, redact(natural(v))[:6000]) for k, v in params.items()]
        retry(lambda: self.client.log_batch(self.run_id, params=batch), what="log params")  # MLflow chunks by 100

    def set_tags(self, tags: dict[str, Any]) -> None:
        set_run_tags(self.uri, self.run_id, tags)

    def log_inputs(self, datasets: list[dict[str, str]]) -> None:
        """MLflow dataset inputs (`name`, `digest`, `source`, `source_type`, `context`, optional `profile`):
        the run page's Datasets and the runs table's Dataset column."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], redact(d["source"]),
                                       profile=d.get("profile")),
                               [InputTag("mlflow.data.context", d["context"])]) for d in datasets]
        # Parallel jobs inserting one new dataset: one loses the unique-constraint race, then finds it there.
        retry(lambda: self.client.log_inputs(self.run_id, datasets=inputs), what="log inputs",
              also=("UNIQUE constraint failed: datasets",))

    def set_note(self, text: str) -> None:
        """The run's description (Markdown), shown on its page in the UI."""
        self.set_tags({NOTE: text})

    @contextmanager
    def system_metrics(self, on: bool, interval: float = 5.0) -> Iterator[None]:
        """MLflow's system metrics (CPU/GPU utilisation and memory) every `interval` s while inside,
        when `on`; without psutil (or pynvml for GPUs) MLflow logs what it can, or nothing, and says why."""
        if not on:
            yield
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, tracking_uri=mlflow_uri(self.uri))
        except ImportError as e:
            log.warning("no system metrics: %s (pip install psutil)", e)
            yield
            return
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def log_dict(self, obj: Any, path: str) -> None:
        self.client.log_dict(self.run_id, redact_values(obj), path)

    def log_figure(self, fig: Any, path: str) -> None:
        self.client.log_figure(self.run_id, fig, path)

    def log_artifact(self, local_path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(local_path))


@contextmanager
def start_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, Any],
              resume_run_id: str | None = None) -> Iterator[JobRun]:
    """Open a run (or reopen `resume_run_id` as RUNNING); end it FINISHED once every metric is
    written, or FAILED (KILLED on Ctrl-C) with the reason as tag `failure_reason`, then re-raise."""
    c = client(uri)
    if resume_run_id:
        retry(lambda: c.update_run(resume_run_id, status="RUNNING"), what="reopen run")
        run = JobRun(uri, resume_run_id)
        before = get_run(uri, resume_run_id).data.tags
        if "failure_reason" in before:  # the reason of the interruption no longer describes the run
            tags = tags | {"interrupted_by": before["failure_reason"]}
            retry(lambda: c.delete_tag(resume_run_id, "failure_reason"), what="delete tag")
        run.set_tags(tags)
        run.skip_logged_steps()
    else:
        run = JobRun(uri, create_run(uri, experiment_id, run_name, tags))
    try:
        yield run
        run.flush()
    except BaseException as e:
        try:
            run.flush()  # what was measured before the failure still lands
        except Exception as e3:
            log.error("could not write all metrics of run %s: %s", run.run_id, e3)
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:5000]
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        try:
            run.set_tags({"failure_reason": reason})
            end_run(uri, run.run_id, status)
        except Exception as e2:  # the original error matters more than a failed status write
            log.error("could not mark run %s %s: %s", run.run_id, status, e2)
        raise
    end_run(uri, run.run_id, "FINISHED")
