"""MLflow I/O: the store, runs, params, metrics, tags and artifacts. The one module that talks to MLflow.

Uses `MlflowClient` with explicit run ids (no global active-run stack), so several jobs in one
process (Hydra's basic launcher) never log into each other's runs. Metrics go through MLflow's own
asynchronous logging (`log_batch(..., synchronous=False)`); a batch that fails there (e.g. SQLite's
"database is locked") is written again synchronously with retries, and one that still fails stops
the job: a run never ends FINISHED with metrics missing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

from rethink.run import stores
from rethink.run.redact import redact, split_credentials
from rethink.system import filelock

log = logging.getLogger(__name__)
T = TypeVar("T")

# One async writer thread per process: batches reach the store in the order they were logged, and
# a single writer never contends with itself for SQLite's lock. Read by MLflow when the queue starts.
os.environ.setdefault("MLFLOW_ASYNC_LOGGING_THREADPOOL_SIZE", "1")


# MLflow 3's UI shows an experiment of this kind as runs (training), not as GenAI traces.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
NOTE = "mlflow.note.content"  # the run's description, shown on its page in the UI


def default_tracking_uri() -> str:
    """sqlite:///<cwd>/mlruns/mlflow.db (absolute, so every job of a sweep hits the same file)."""
    return f"sqlite:///{(Path.cwd() / 'mlruns' / 'mlflow.db').resolve()}"


def tracking_uri(cfg) -> str:
    """The configured tracking URI (`mlflow.tracking_uri`), or the default store."""
    return cfg.mlflow.tracking_uri or default_tracking_uri()


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to the DB file; a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def retry(fn: Callable[[], T], attempts: int = 8, what: str = "mlflow call", also: tuple[str, ...] = ()) -> T:
    """Run `fn`, retrying with backoff when SQLite reports contention ("database is locked"), or an
    error containing one of `also` (a race the next attempt wins)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:
            transient = "locked" in str(e) or "busy" in str(e).lower() or any(a in str(e) for a in also)
            if not transient or i == attempts - 1:
                raise
            delay = 0.05 * 2**i
            log.warning("%s: %s; retrying in %.2fs", what, str(e).splitlines()[0], delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def client(uri: str):
    """The process's MlflowClient for `uri` (made once: MLflow keeps the store open per URI anyway), quieting the
    store's migration chatter. A new SQLite store is a copy of a migrated template (`stores.create_from_template`)."""
    if (c := _clients.get(uri)) is not None:
        return c
    import mlflow

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def make():
        return mlflow.MlflowClient(tracking_uri=mlflow_uri(uri))

    if not uri.startswith("sqlite:///"):
        return _clients.setdefault(uri, make())
    # MlflowClient() opens the store, and MLflow creates and migrates a SQLite store in the first process
    # that opens it: under the lock, so a reader (a report, a test polling a sweep) and a sweep starting
    # together never both migrate (one would fail, "Online migration expected to match one row ...").
    with store_lock(uri):
        db = stores.sqlite_path(uri)
        if db is not None and not db.exists():
            stores.create_from_template(db, mlflow.__version__,
                                        lambda p: mlflow.MlflowClient(tracking_uri=f"sqlite:///{p}"))
        c = retry(make, what="open store")
    return _clients.setdefault(uri, c)


_clients: dict[str, Any] = {}  # the MlflowClient of each store this process has opened


def mlflow_uri(uri: str) -> str:
    """`uri` as MLflow gets it: credentials in it (`http://user:pass@host`) go to MLflow through
    MLFLOW_TRACKING_USERNAME / _PASSWORD instead, so no URL MLflow prints or raises carries them."""
    bare, user, password = split_credentials(uri)
    if user is not None and password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    return bare


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person sees the run: the server's run page, or for a SQLite store the page `make ui` serves."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"  # not MLflow 3's GenAI view
    if uri.startswith(("http://", "https://")):
        return f"{split_credentials(uri)[0].rstrip('/')}/{page}"
    return f"browse with `make ui` at http://127.0.0.1:5000/{page}"


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock next to a SQLite store while it is opened (created, migrated) or its experiment
    made: two processes starting together on a new store must not both run the schema migrations (one loses)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    # optional: where the lock file cannot be made, no process can create the store there either
    with filelock.exclusive(db.with_name(db.name + ".lock"), f"waiting for another process setting up {db} ...",
                            optional=True):
        yield


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (and its schema) and the experiment if missing; return the experiment id.
    A SQLite store that is not a sound SQLite file, or not writable, stops here with one line."""
    stores.check(uri)
    c = client(uri)  # the schema, made under the lock
    with store_lock(uri):  # one process creates the experiment

        def get_or_create() -> str:
            exp = c.get_experiment_by_name(name)
            if exp is not None:
                if any(exp.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):
                    tag_experiment(uri, exp.experiment_id)  # a store made before rethink set it
                return exp.experiment_id
            try:
                return c.create_experiment(name, artifact_location=artifact_root(uri), tags=EXPERIMENT_TAGS)
            except Exception:
                exp = c.get_experiment_by_name(name)  # created by a concurrent job meanwhile
                if exp is None:
                    raise
                return exp.experiment_id

        return retry(get_or_create, what="create experiment")


def tag_experiment(uri: str, experiment_id: str) -> None:
    """Set `EXPERIMENT_TAGS` (MLflow's UI then shows the experiment's runs, not GenAI traces); a UI
    nicety, so a failure is a warning, never a reason to stop."""
    try:
        for k, v in EXPERIMENT_TAGS.items():
            retry(lambda k=k, v=v: client(uri).set_experiment_tag(experiment_id, k, v), what="tag experiment")
    except Exception as e:
        log.warning("could not tag experiment %s for the UI: %s", experiment_id, str(e).splitlines()[0] if str(e) else e)


@cache
def git_commit() -> str:
    """The commit of the code that runs (empty when not in a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


# --- runs by id (the lifecycle's reads and writes) ---


def search(uri: str, experiment_id: str, filter_string: str, newest_first: bool = False, max_results: int = 1000) -> list:
    """Runs of one experiment matching an MLflow filter string."""
    c = client(uri)
    order = ["attributes.start_time DESC"] if newest_first else None
    return retry(lambda: c.search_runs([experiment_id], filter_string=filter_string, order_by=order,
                                       max_results=max_results), what="search runs")


def get_run(uri: str, run_id: str):
    return retry(lambda: client(uri).get_run(run_id), what="get run")


def create_run(uri: str, experiment_id: str, run_name: str, tags: dict[str, Any]) -> str:
    """A new RUNNING run with MLflow's standard context tags (source, user, git commit); returns its id."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = {k: redact(str(v)) for k, v in resolve_tags({k: str(v) for k, v in tags.items()}).items()}
    return retry(lambda: client(uri).create_run(experiment_id, run_name=run_name, tags=tags), what="create run").info.run_id


def end_run(uri: str, run_id: str, status: str) -> None:
    retry(lambda: client(uri).set_terminated(run_id, status=status), what="end run")


def set_run_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    """Tags on any run (e.g. a job noting on the parent run that it was skipped)."""
    from mlflow.entities import RunTag

    retry(lambda: client(uri).log_batch(run_id, tags=[RunTag(k, redact(str(v))) for k, v in tags.items()]), what="set tags")


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Metrics written now (synchronously), e.g. a sweep's counts on its parent run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    retry(lambda: client(uri).log_batch(run_id, metrics=batch), what="log metrics")


def runs_frame(uri: str, experiment: str, filter_string: str = ""):
    """`mlflow.search_runs` over one experiment by name, as a pandas DataFrame (empty if none)."""
    import mlflow

    c = client(uri)
    exp = retry(lambda: c.get_experiment_by_name(experiment), what="get experiment")
    if exp is None:
        import pandas as pd

        return pd.DataFrame()
    mlflow.set_tracking_uri(mlflow_uri(uri))
    return retry(lambda: mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=filter_string,
                                            output_format="pandas"), what="search runs")


def dataset_sources(uri: str, experiment: str, context: str = "training") -> dict[str, tuple[str, str]]:
    """Per run id, (source type, source) of its dataset input logged with `context` (`record.dataset_inputs`):
    where the run's data came from, which `search_runs`' frame does not carry. Runs without one are absent."""
    c = client(uri)
    exp = retry(lambda: c.get_experiment_by_name(experiment), what="get experiment")
    out: dict[str, tuple[str, str]] = {}
    token = None
    while exp is not None:
        page = retry(partial(c.search_runs, [exp.experiment_id], max_results=1000, page_token=token), what="search runs")
        for run in page:
            for d in run.inputs.dataset_inputs if run.inputs else ():
                if any(t.key == "mlflow.data.context" and t.value == context for t in d.tags):
                    out[run.info.run_id] = (d.dataset.source_type, d.dataset.source)
        token = page.token
        if not token:
            break
    return out


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of one metric."""
    return [(m.step, m.value) for m in retry(lambda: client(uri).get_metric_history(run_id, key), what="metric history")]
