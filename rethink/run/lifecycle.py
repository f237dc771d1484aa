"""The life of a job's run across sweeps: skip what FINISHED, resume what was interrupted.

Owns the rules (which run a re-run continues, when a RUNNING run is stale, which runs are marked
KILLED), the checkpoint files (where, atomic write, load) and the sweep's parent run. Reads and
writes the store only through `rethink.run.track`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rethink.errors import RethinkError
from rethink.run import checkpoint, track
from rethink.system.processes import process_alive, process_id

log = logging.getLogger(__name__)

# The sweep's parent run, set by the launching process (rethink.sweep.callbacks) and inherited by the job
# processes of joblib / submitit / local Ray; also written to <sweep dir>/PARENT_FILE for other hosts.
PARENT_ENV, SWEEP_ENV, PARENT_FILE = "RETHINK_PARENT_RUN_ID", "RETHINK_SWEEP_DIR", ".mlflow_parent_run_id"
UNFINISHED = ("RUNNING", "FAILED", "KILLED")


def is_stale(run) -> bool:
    """A RUNNING run whose process is gone (killed, node lost). On another host we cannot check the
    process and assume it is gone: the same job running twice at once is not supported."""
    return run.info.status == "RUNNING" and process_alive(run.data.tags.get("process", "")) is not True


def mark_killed(uri: str, run_id: str, reason: str) -> None:
    """End a run whose process died without closing it: KILLED, with the reason."""
    track.set_run_tags(uri, run_id, {"failure_reason": reason[:5000]})
    track.end_run(uri, run_id, "KILLED")


# --- checkpoints: one file per job identity, outside the sweep's output dir ---


def checkpoint_dir(uri: str, configured: str | None = None) -> Path:
    """Where checkpoints live: `configured`, else `checkpoints/` next to the SQLite DB, else ./mlruns/checkpoints.

    Keyed by config hash, not by the Hydra output dir: a re-run of a sweep gets a new sweep dir.
    """
    if configured:
        return Path(configured).resolve()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent.resolve() / "checkpoints"
    return (Path.cwd() / "mlruns" / "checkpoints").resolve()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, with a checksum (`rethink.run.checkpoint`): a kill mid-write leaves the previous
    checkpoint intact, and a file altered afterwards is never resumed from."""
    checkpoint.write(path, state, owner=process_id())


def load_checkpoint(path: Path) -> dict | None:
    """A checkpoint written by `save_checkpoint`, or None when there is none (or it fails its checks)."""
    if not path.is_file():
        return None
    try:
        return checkpoint.read(path)
    except (checkpoint.CheckpointError, OSError) as e:  # a bad file must not stop the job: it trains afresh
        log.warning("ignoring checkpoint %s: %s", path, e)
        return None


# --- one process per job identity at a time ---


@contextmanager
def claim(lock_dir: Path, identity: str) -> Iterator[None]:
    """Hold `<lock_dir>/<identity>.lock` while the job runs, so two sweeps started together never
    train one job twice. A lock whose process is gone (kill -9, lost node) is taken over; a live
    holder on this host is an error naming it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{identity}.lock"
    me = process_id()
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder, age = path.read_text().strip(), time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if not holder and age < 5:  # created an instant ago, its holder is writing its name
                time.sleep(0.05)
                continue
            # Another host's process cannot be checked: taken as gone, as for RUNNING runs (a SLURM
            # requeue lands on another node); the same job running twice at once is not supported.
            if holder and process_alive(holder) is True:
                raise RethinkError(f"an identical job (config {identity}) is running now in process {holder}: wait for "
                                   f"it, or rerun=true to train a second copy (lock {path})") from None
            with suppress(FileNotFoundError):  # stale: only one taker wins the rename
                os.rename(path, path.with_name(f"{path.name}.stale.{os.getpid()}"))
                path.with_name(f"{path.name}.stale.{os.getpid()}").unlink()
                log.warning("took over the lock of a dead process (%s) for config %s", holder or "unknown", identity)
    with os.fdopen(fd, "w") as f:
        f.write(me + "\n")
    try:
        yield
    finally:
        with suppress(FileNotFoundError):
            if path.read_text().strip() == me:
                path.unlink()


def remove_stale_tmp(folder: Path) -> None:
    """Delete the temporary checkpoint files of dead writers (this host), or older than an hour (any host)."""
    checkpoint.remove_stale_tmp(folder, gone=lambda owner: process_alive(owner) is False)


# --- skip and resume ---


def find_finished(uri: str, experiment_id: str, identity: str) -> dict | None:
    """The newest FINISHED run with this identity, as {run_id, metrics}, or None."""
    runs = track.search(uri, experiment_id, f"tags.config_hash = '{identity}' and attributes.status = 'FINISHED'",
                        newest_first=True, max_results=1)
    return {"run_id": runs[0].info.run_id, "metrics": dict(runs[0].data.metrics)} if runs else None


def unfinished_runs(uri: str, experiment_id: str, identity: str) -> list:
    """Runs with this identity that did not finish (RUNNING, FAILED, KILLED), newest first."""
    runs = track.search(uri, experiment_id, f"tags.config_hash = '{identity}'", newest_first=True)
    return [r for r in runs if r.info.status in UNFINISHED]


@dataclass
class Resume:
    """An interrupted run to continue and the checkpoint it continues from."""

    run: Any  # mlflow.entities.Run
    state: dict


def find_resumable(uri: str, experiment_id: str, identity: str, ckpt_file: Path) -> Resume | None:
    """The interrupted run of this job (RUNNING with its process gone, FAILED or KILLED) that the
    checkpoint belongs to; None to start afresh. Stale RUNNING runs that cannot be continued are
    marked KILLED; a live identical job is an error."""
    unfinished = unfinished_runs(uri, experiment_id, identity)
    if live := [r for r in unfinished if r.info.status == "RUNNING" and not is_stale(r)]:
        raise RethinkError(f"an identical job (config {identity}) is running now as run {live[0].info.run_id} "
                           f"(process {live[0].data.tags.get('process')}): wait for it, or rerun=true to train a second copy")
    state, unusable = (checkpoint.load_verified(ckpt_file, identity, {r.info.run_id for r in unfinished})
                       if unfinished else (None, None))
    resumed = next((r for r in unfinished if state and r.info.run_id == state.get("run_id")), None)
    for r in unfinished:
        if r is not resumed and r.info.status == "RUNNING":
            mark_killed(uri, r.info.run_id, "its process is gone (killed?) and it left no checkpoint to resume; "
                                            "the job was trained again in a new run")
    if unusable:  # most likely the newest interrupted run's: it cannot be continued
        mark_killed(uri, unfinished[0].info.run_id, unusable_reason(unusable, unfinished[0]))
    return Resume(resumed, state) if resumed else None


def unusable_reason(unusable: str, run) -> str:
    """The reason a run is KILLED when its checkpoint could not be used (and what interrupted it)."""
    before = run.data.tags.get("failure_reason")
    return f"{unusable}: the job was trained again in a new run" + (f" (interrupted by: {before})" if before else "")


# --- the sweep's parent run ---


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


def open_sweep(uri: str, experiment_id: str, sweep_dir: str, tags: dict[str, Any]) -> str:
    """The parent run of a sweep (jobs are its children); first ends as KILLED the parent runs of
    earlier sweeps whose launching process died. Returns the parent's run id."""
    for r in track.search(uri, experiment_id, "tags.kind = 'sweep' and attributes.status = 'RUNNING'"):
        if is_stale(r):
            mark_killed(uri, r.info.run_id, "the launching process of this sweep died (killed?)")
    tags = {k: str(v) for k, v in tags.items()} | {"kind": "sweep", "sweep_dir": sweep_dir, "process": process_id()}
    return track.create_run(uri, experiment_id, f"sweep-{sweep_dir}", tags)


def close_sweep(uri: str, parent_id: str, completed: bool,
                summarize: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Count the sweep's jobs by outcome, set the counts as tags of the parent run (tags, not
    metrics: they would crowd its charts) and end it: FINISHED when every job finished or was
    skipped, FAILED otherwise (or when the sweep itself did not complete).

    A child still RUNNING whose process is gone is marked KILLED first (its next run resumes it).
    `summarize` gets the counts and the status before the run ends; its failure is only a warning.
    """
    parent = track.get_run(uri, parent_id)
    children = track.search(uri, parent.info.experiment_id, f"tags.`mlflow.parentRunId` = '{parent_id}'",
                            max_results=50000)
    status = {r.info.run_id: r.info.status for r in children}
    for r in children:
        if is_stale(r):
            mark_killed(uri, r.info.run_id, "the job's process ended without closing its run (killed?)")
            status[r.info.run_id] = "KILLED"
    counts = {"jobs_finished": sum(s == "FINISHED" for s in status.values()),
              "jobs_failed": sum(s in ("FAILED", "KILLED") for s in status.values()),
              "jobs_running": sum(s == "RUNNING" for s in status.values()),
              "jobs_skipped": sum(k.startswith("skipped.") for k in parent.data.tags)}
    track.set_run_tags(uri, parent_id, counts)
    ok = completed and counts["jobs_failed"] == 0 and counts["jobs_running"] == 0
    outcome = counts | {"status": "FINISHED" if ok else "FAILED"}
    if summarize:
        try:
            summarize(outcome)
        except Exception as e:  # a summary is a convenience: the parent run still ends, with its status
            log.warning("could not summarise the sweep on its parent run %s: %s", parent_id,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
    track.end_run(uri, parent_id, outcome["status"])
    return outcome
