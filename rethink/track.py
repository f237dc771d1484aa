"""MLflow tracking: the SQLite store under mlruns/, one run per job, params/metrics/tags/artifacts.

Uses `MlflowClient` with explicit run ids (no global active-run stack), so several jobs in one
process (Hydra's basic launcher) never log into each other's runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
T = TypeVar("T")

# Keys that do not change what a job computes: left out of its identity hash.
NON_IDENTITY_KEYS = ("mlflow", "rerun", "model.cpu", "sweep_levels", "trainer.device", "trainer.compile", "trainer.eval_batch_size",
                     "trainer.checkpoint_every", "checkpoint_dir")
# The sweep's parent run, set by the launching process (rethink.callbacks) and inherited by the job
# processes of joblib / submitit / local Ray; also written to <sweep dir>/PARENT_FILE for other hosts.
PARENT_ENV, SWEEP_ENV, PARENT_FILE = "RETHINK_PARENT_RUN_ID", "RETHINK_SWEEP_DIR", ".mlflow_parent_run_id"
UNFINISHED = ("RUNNING", "FAILED", "KILLED")


def default_tracking_uri() -> str:
    """sqlite:///<cwd>/mlruns/mlflow.db (absolute, so every job of a sweep hits the same file)."""
    return f"sqlite:///{(Path.cwd() / 'mlruns' / 'mlflow.db').resolve()}"


def tracking_uri(cfg: DictConfig) -> str:
    """The configured tracking URI, or the default store."""
    return cfg.mlflow.tracking_uri or default_tracking_uri()


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to the DB file; a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def checkpoint_dir(uri: str, configured: str | None = None) -> Path:
    """Where checkpoints live: `configured`, else `checkpoints/` next to the SQLite DB, else ./mlruns/checkpoints.

    Keyed by config hash, not by the Hydra output dir: a re-run of a sweep gets a new sweep dir.
    """
    if configured:
        return Path(configured).resolve()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent.resolve() / "checkpoints"
    return (Path.cwd() / "mlruns" / "checkpoints").resolve()


def process_id() -> str:
    """`host:pid:start-time` of this process, recorded on runs so a later sweep can tell a dead one."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat (tells a reused pid apart); "" when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return "" if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return ""


def process_alive(process: str) -> bool | None:
    """Whether the process of a `process_id()` still runs; None when it ran on another host (can't tell)."""
    host, pid, start = (process.rsplit(":", 2) + ["", ""])[:3] if process else ("", "0", "")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if start and Path("/proc").is_dir():
        return _start_time(int(pid)) == start
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def retry(fn: Callable[[], T], attempts: int = 8, what: str = "mlflow call") -> T:
    """Run `fn`, retrying with backoff when SQLite reports contention ("database is locked")."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:
            if "locked" not in str(e) and "busy" not in str(e).lower() or i == attempts - 1:
                raise
            delay = 0.05 * 2**i
            log.warning("%s: %s; retrying in %.2fs", what, str(e).splitlines()[0], delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def client(uri: str):
    """An MlflowClient for `uri`, quieting the store's migration chatter."""
    import mlflow

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (and its schema) and the experiment if missing; return the experiment id."""
    c = client(uri)

    def get_or_create() -> str:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return c.create_experiment(name, artifact_location=artifact_root(uri))
        except Exception:
            exp = c.get_experiment_by_name(name)  # created by a concurrent job meanwhile
            if exp is None:
                raise
            return exp.experiment_id

    return retry(get_or_create, what="create experiment")


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as {dotted.key: value}, without Hydra's own node and `_target_`s."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def param_value(v: Any) -> str:
    """Numbers as floats ("0" and "0.0" must not be two values of one param), lists as JSON."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | float):
        return repr(float(v))
    if isinstance(v, list | tuple):
        return json.dumps(v)
    return str(v)


def config_hash(cfg: DictConfig) -> str:
    """A job's identity: hash of its resolved config minus keys that do not change results.

    A training job (task.name == train) leaves out the `task` node too, so adding the task group
    did not change the identity of runs recorded before it existed.
    """
    flat = flatten(cfg)
    skip = NON_IDENTITY_KEYS + (("task",) if flat.get("task.name", "train") == "train" else ())
    flat = {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in skip)}
    blob = json.dumps({k: param_value(v) for k, v in sorted(flat.items())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def git_commit() -> str:
    """The commit of the code that runs (empty when not in a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def find_finished(uri: str, experiment_id: str, identity: str) -> dict | None:
    """The newest FINISHED run with this config hash, as {run_id, metrics}, or None."""
    c = client(uri)
    runs = retry(lambda: c.search_runs(
        [experiment_id],
        filter_string=f"tags.config_hash = '{identity}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    ), what="search runs")
    if not runs:
        return None
    return {"run_id": runs[0].info.run_id, "metrics": dict(runs[0].data.metrics)}


def unfinished_runs(uri: str, experiment_id: str, identity: str) -> list:
    """Runs with this config hash that did not finish (RUNNING, FAILED, KILLED), newest first."""
    c = client(uri)
    runs = retry(lambda: c.search_runs([experiment_id], filter_string=f"tags.config_hash = '{identity}'",
                                       order_by=["attributes.start_time DESC"], max_results=1000), what="search runs")
    return [r for r in runs if r.info.status in UNFINISHED]


def is_stale(run) -> bool:
    """A RUNNING run whose process is gone (killed, node lost). On another host we cannot check the
    process and assume it is gone: the same job running twice at once is not supported."""
    return run.info.status == "RUNNING" and process_alive(run.data.tags.get("process", "")) is not True


def mark_killed(uri: str, run_id: str, reason: str) -> None:
    """End a run whose process died without closing it: KILLED, with the reason."""
    c = client(uri)
    from mlflow.entities import RunTag

    retry(lambda: c.log_batch(run_id, tags=[RunTag("failure_reason", reason[:5000])]), what="set tags")
    retry(lambda: c.set_terminated(run_id, status="KILLED"), what="end run")


def parent_run_id(sweep_dir: str) -> str | None:
    """The parent run of the sweep this job belongs to: from the environment the launching process
    set (when it is for this sweep dir), else from the file it wrote into the sweep dir."""
    if not sweep_dir:
        return None
    here = str(Path(sweep_dir).resolve())
    if os.environ.get(PARENT_ENV) and os.environ.get(SWEEP_ENV) == here:
        return os.environ[PARENT_ENV]
    f = Path(here) / PARENT_FILE
    return (f.read_text().strip() or None) if f.is_file() else None


def set_run_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    """Tags on any run (e.g. a job noting on the parent run that it was skipped)."""
    from mlflow.entities import RunTag

    c = client(uri)
    retry(lambda: c.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]), what="set tags")


def open_sweep(uri: str, experiment_id: str, sweep_dir: str, tags: dict[str, Any]) -> str:
    """The parent run of a sweep (jobs are its children); first ends as KILLED the parent runs of
    earlier sweeps whose launching process died. Returns the parent's run id."""
    c = client(uri)
    stale = retry(lambda: c.search_runs([experiment_id], filter_string="tags.kind = 'sweep' and attributes.status = 'RUNNING'",
                                        max_results=1000), what="search runs")
    for r in stale:
        if is_stale(r):
            mark_killed(uri, r.info.run_id, "the launching process of this sweep died (killed?)")
    tags = {k: str(v) for k, v in tags.items()} | {"kind": "sweep", "sweep_dir": sweep_dir, "process": process_id()}
    return retry(lambda: c.create_run(experiment_id, run_name=f"sweep-{sweep_dir}", tags=tags), what="create run").info.run_id


def close_sweep(uri: str, parent_id: str, completed: bool) -> dict[str, int]:
    """Count the sweep's jobs by outcome, log the counts on the parent run and end it: FINISHED when
    every job finished or was skipped, FAILED otherwise (or when the sweep itself did not complete).

    A child still RUNNING whose process is gone is marked KILLED first (its next run resumes it).
    """
    c = client(uri)
    parent = retry(lambda: c.get_run(parent_id), what="get run")
    children = retry(lambda: c.search_runs([parent.info.experiment_id],
                                           filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                                           max_results=50000), what="search runs")
    status = {r.info.run_id: r.info.status for r in children}
    for r in children:
        if is_stale(r):
            mark_killed(uri, r.info.run_id, "the job's process ended without closing its run (killed?)")
            status[r.info.run_id] = "KILLED"
    counts = {"jobs_finished": sum(s == "FINISHED" for s in status.values()),
              "jobs_failed": sum(s in ("FAILED", "KILLED") for s in status.values()),
              "jobs_running": sum(s == "RUNNING" for s in status.values()),
              "jobs_skipped": sum(k.startswith("skipped.") for k in parent.data.tags)}
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    retry(lambda: c.log_batch(parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()]), what="log metrics")
    ok = completed and counts["jobs_failed"] == 0 and counts["jobs_running"] == 0
    retry(lambda: c.set_terminated(parent_id, status="FINISHED" if ok else "FAILED"), what="end run")
    return counts | {"status": "FINISHED" if ok else "FAILED"}


class JobRun:
    """One MLflow run: batched metric logging, artifacts, and a terminal status."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id, self.client = uri, run_id, client(uri)
        self.log_seconds = 0.0  # time the training thread spent handing metrics over
        self.write_seconds = 0.0  # time the writer thread spent in the store
        self.logged_through: dict[str, int] = {}  # resumed run: last step already logged, per metric
        # Metric batches go to the store from one background thread, in order, with the same
        # retries: the training loop never waits for SQLite or HTTP. flush() waits and re-raises.
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        threading.Thread(target=self._write_loop, daemon=True, name=f"mlflow-writer-{run_id[:8]}").start()

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if self._error is None:
                    t0 = time.perf_counter()
                    retry(lambda b=batch: self.client.log_batch(self.run_id, metrics=b), what="log metrics")
                    self.write_seconds += time.perf_counter() - t0
            except BaseException as e:  # kept for flush(): a lost metric must not pass silently
                self._error = e
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued metric is in the store; raise if a write failed."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def skip_logged_steps(self) -> None:
        """A resumed run replays the epochs since its last checkpoint: log only steps not yet logged."""
        keys = retry(lambda: self.client.get_run(self.run_id), what="get run").data.metrics
        for k in keys:
            hist = retry(lambda k=k: self.client.get_metric_history(self.run_id, k), what="metric history")
            self.logged_through[k] = max((m.step for m in hist), default=-1)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """All metrics of one step in one batch write."""
        from mlflow.entities import Metric

        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v)) and step > self.logged_through.get(k, -1)]
        if not batch:
            return
        for k in metrics:
            self.logged_through[k] = max(step, self.logged_through.get(k, -1))
        self._queue.put(batch)
        self.log_seconds += time.perf_counter() - t0

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, param_value(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # log_batch takes at most 100 params
            retry(lambda chunk=batch[i : i + 100]: self.client.log_batch(self.run_id, params=chunk), what="log params")

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        retry(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]), what="set tags")

    def log_dict(self, obj: Any, path: str) -> None:
        self.client.log_dict(self.run_id, obj, path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, fig: Any, path: str) -> None:
        self.client.log_figure(self.run_id, fig, path)


@contextmanager
def start_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, Any],
              resume_run_id: str | None = None) -> Iterator[JobRun]:
    """Open a run (or reopen `resume_run_id` as RUNNING); end it FINISHED, or FAILED with the reason as
    tag `failure_reason` (then re-raise)."""
    c = client(uri)
    tags = {k: str(v) for k, v in tags.items()} | {"process": process_id()}
    if resume_run_id:
        retry(lambda: c.update_run(resume_run_id, status="RUNNING"), what="reopen run")
        info = retry(lambda: c.get_run(resume_run_id), what="get run").info
    else:
        info = retry(lambda: c.create_run(experiment_id, run_name=run_name, tags=tags), what="create run").info
    run = JobRun(uri, info.run_id)
    if resume_run_id:
        before = retry(lambda: c.get_run(resume_run_id), what="get run").data.tags
        if "failure_reason" in before:  # the reason of the interruption no longer describes the run
            tags["interrupted_by"] = before["failure_reason"]
            retry(lambda: c.delete_tag(resume_run_id, "failure_reason"), what="delete tag")
        run.set_tags(tags)
        run.skip_logged_steps()
    try:
        yield run
    except BaseException as e:
        try:
            run.flush()  # what was measured before the failure still lands
        except Exception as e3:
            log.error("could not write all metrics of run %s: %s", info.run_id, e3)
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:5000]
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        try:
            run.set_tags({"failure_reason": reason})
            retry(lambda: c.set_terminated(info.run_id, status=status), what="end run")
        except Exception as e2:  # the original error matters more than a failed status write
            log.error("could not mark run %s %s: %s", info.run_id, status, e2)
        raise
    run.flush()
    retry(lambda: c.set_terminated(info.run_id, status="FINISHED"), what="end run")
