"""MLflow under load: many jobs, several parallel writers, one store. Are metrics lost, how slow is a write?

    python -m bench.mlflow_load                                  # 32 jobs, 4 writers, SQLite and server
    python -m bench.mlflow_load --jobs 32 --writers 4 --epochs 50 --backends sqlite,server --json out.json

Each job is what a rethink job does to the store, without the training: create a child run of the
sweep's parent run, then log one batch of `--metrics` metrics per "epoch" (`JobRun.log_metrics`,
the same call and retry-on-"database is locked" path as a real job), then end the run FINISHED.
`--writers` processes run the jobs in parallel, into a fresh SQLite store directly (`sqlite`) or
through a local `mlflow server` bound to 127.0.0.1 over a fresh SQLite store (`server`, one server
worker = one writer process). Afterwards every metric history is read back: lost = expected
(step, value) points not found, duplicated = points found twice. Latency = wall time of one
`log_metrics` call (one epoch's batch handed to MLflow's asynchronous logging: what the training
thread waits), over all calls of all jobs; `JobRun.flush()` then waits for the writes themselves.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def value(job: int, epoch: int, k: int) -> float:
    """The fake metric value: unique per (job, epoch, key), so a misplaced point is caught too."""
    return job * 1e6 + epoch * 1e2 + k


class CountRetries(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += "retrying" in record.getMessage()


def job(args: tuple) -> dict:
    """One fake job in a writer process: child run, one metric batch per epoch, FINISHED."""
    uri, experiment_id, parent_id, j, epochs, metrics, sleep = args
    from rethink.run import open_run, track

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "View run at ..." line per run
    counter = CountRetries()
    logging.getLogger("rethink.run.track").addHandler(counter)
    run_id = track.create_run(uri, experiment_id, f"load-{j}", {"mlflow.parentRunId": parent_id, "job_num": j})
    run = open_run.JobRun(uri, run_id)
    latencies, first = [], time.time()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        run.log_metrics({f"m{k:02d}": value(j, epoch, k) for k in range(metrics)}, step=epoch)
        latencies.append(time.perf_counter() - t0)
        time.sleep(sleep)
    run.flush()  # every batch in the store before the run ends (what start_run does for a job)
    track.end_run(uri, run_id, "FINISHED")
    logging.getLogger("rethink.run.track").removeHandler(counter)
    return {"run_id": run_id, "job": j, "latencies": latencies, "retries": counter.n, "first": first, "last": time.time()}


def start_server(store: Path, workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    log = open(store / "server.log", "w")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                             "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers)],
                            cwd=store, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"mlflow server did not start: {(store / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def measure(uri: str, a: argparse.Namespace) -> dict:
    from rethink.run import track

    experiment_id = track.ensure_experiment(uri, "load")  # as the sweep callback does, before any writer
    c = track.client(uri)
    parent_id = c.create_run(experiment_id, run_name="sweep-load", tags={"kind": "sweep"}).info.run_id
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.writers) as pool:
        results = pool.map(job, [(uri, experiment_id, parent_id, j, a.epochs, a.metrics, a.sleep) for j in range(a.jobs)],
                           chunksize=1)
    wall = time.perf_counter() - t0
    c.set_terminated(parent_id, status="FINISHED")

    lost = duplicated = misplaced = 0
    children = c.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000)
    for r in results:
        for k in range(a.metrics):
            hist = c.get_metric_history(r["run_id"], f"m{k:02d}")
            got = [(m.step, m.value) for m in hist]
            want = {(e, value(r["job"], e, k)) for e in range(1, a.epochs + 1)}
            lost += len(want - set(got))
            duplicated += len(got) - len(set(got))
            misplaced += len(set(got) - want)
    lat = sorted(x for r in results for x in r["latencies"])
    span = max(r["last"] for r in results) - min(r["first"] for r in results)  # writing, without process start-up
    q = statistics.quantiles(lat, n=100)
    return {"jobs": a.jobs, "writers": a.writers, "epochs": a.epochs, "metrics_per_epoch": a.metrics,
            "children_finished": sum(r.info.status == "FINISHED" for r in children),
            "points_expected": a.jobs * a.epochs * a.metrics, "lost": lost, "duplicated": duplicated,
            "misplaced": misplaced, "retries": sum(r["retries"] for r in results), "wall_s": round(wall, 2),
            "logging_s": round(span, 2), "batches_per_s": round(len(lat) / span, 1), "latency_ms": {
                "p50": round(1e3 * q[49], 1), "p95": round(1e3 * q[94], 1), "p99": round(1e3 * q[98], 1),
                "max": round(1e3 * lat[-1], 1), "mean": round(1e3 * statistics.fmean(lat), 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=32)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--metrics", type=int, default=12, help="metrics per epoch (a rethink job logs 12 with corruption)")
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds between epochs (0: write as fast as possible)")
    ap.add_argument("--backends", default="sqlite,server")
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out = {}
    for backend in a.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"rethink-load-{backend}-") as tmp:
            store = Path(tmp)
            if backend == "sqlite":
                out[backend] = measure(f"sqlite:///{store}/mlflow.db", a)
            else:
                proc, uri = start_server(store, a.server_workers)
                try:
                    out[backend] = measure(uri, a) | {"server_workers": a.server_workers}
                finally:
                    stop_server(proc)
        r = out[backend]
        print(f"{backend:>7}: {r['jobs']} jobs x {r['epochs']} epochs x {r['metrics_per_epoch']} metrics, "
              f"{r['writers']} writers: lost {r['lost']}, duplicated {r['duplicated']}, misplaced {r['misplaced']}, "
              f"{r['children_finished']}/{r['jobs']} runs FINISHED, {r['retries']} lock retries; "
              f"log_metrics latency p50 {r['latency_ms']['p50']} ms, p95 {r['latency_ms']['p95']} ms, "
              f"max {r['latency_ms']['max']} ms; {r['batches_per_s']} batches/s over {r['logging_s']} s", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
