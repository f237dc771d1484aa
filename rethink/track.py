"""MLflow tracking: the SQLite store under mlruns/, one run per job, params/metrics/tags/artifacts.

Uses `MlflowClient` with explicit run ids (no global active-run stack), so several jobs in one
process (Hydra's basic launcher) never log into each other's runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
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
NON_IDENTITY_KEYS = ("mlflow", "rerun", "model.cpu", "sweep_levels", "trainer.device", "trainer.compile", "trainer.eval_batch_size")


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
    """A job's identity: hash of its resolved config minus keys that do not change results."""
    flat = {k: v for k, v in flatten(cfg).items() if not any(k == p or k.startswith(p + ".") for p in NON_IDENTITY_KEYS)}
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


class JobRun:
    """One MLflow run: batched metric logging, artifacts, and a terminal status."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id, self.client = uri, run_id, client(uri)
        self.log_seconds = 0.0  # time spent logging, to report tracking overhead

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """All metrics of one step in one batch write."""
        from mlflow.entities import Metric

        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
        retry(lambda: self.client.log_batch(self.run_id, metrics=batch), what="log metrics")
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
def start_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, Any]) -> Iterator[JobRun]:
    """Open a run; end it FINISHED, or FAILED with the reason as tag `failure_reason` (then re-raise)."""
    c = client(uri)
    info = retry(lambda: c.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}),
                 what="create run").info
    run = JobRun(uri, info.run_id)
    try:
        yield run
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:5000]
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        try:
            run.set_tags({"failure_reason": reason})
            retry(lambda: c.set_terminated(info.run_id, status=status), what="end run")
        except Exception as e2:  # the original error matters more than a failed status write
            log.error("could not mark run %s %s: %s", info.run_id, status, e2)
        raise
    retry(lambda: c.set_terminated(info.run_id, status="FINISHED"), what="end run")
