"""Faults with real processes, a real SQLite store and a real `mlflow server`: every fault ends in
a complete run or a loud failure (run FAILED/KILLED with the reason, non-zero exit), never in a
FINISHED run with a gap. `python -m bench.faults` runs this file and prints one line per scenario.
"""

import os
import signal
import subprocess

import pytest
from conftest import (
    cli_cmd,
    cli_env,
    free_port,
    run_cli,
    start_mlflow_server,
    stop_mlflow_server,
    wait_for,
)

from rethink.run import open_run, track

pytestmark = pytest.mark.slow

TINY = ["dataset.train_size=200", "dataset.test_size=100"]  # 2 SGD steps per epoch
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CURVES = ["train/loss", "train/acc", "test/acc", "lr"]
LONG = [*TINY, "trainer.stop_at_target=false", "trainer.checkpoint_every=5"]


def job_runs(uri: str) -> list:
    c = track.client(uri)
    exp = c.get_experiment_by_name("rethink")
    runs = c.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [r for r in runs if r.data.tags.get("kind") != "sweep"]


def parent_runs(uri: str) -> list:
    c = track.client(uri)
    exp = c.get_experiment_by_name("rethink")
    return [r for r in c.search_runs([exp.experiment_id], max_results=1000) if r.data.tags.get("kind") == "sweep"]


def assert_complete(uri: str, run, epochs: int) -> None:
    """Every epoch's metrics are in the store: step 2, 4, ..., 2 * epochs for each curve."""
    c = track.client(uri)
    for key in CURVES:
        steps = sorted(m.step for m in c.get_metric_history(run.info.run_id, key))
        assert steps == [2 * e for e in range(1, epochs + 1)], (key, len(steps))


def launch(args: list[str], cwd, data_root, log_name: str, uri: str | None = None, env: dict | None = None):
    log = open(cwd / log_name, "w")
    # A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it: give the
    # child the default disposition, so Ctrl-C reaches it as it does from a terminal.
    proc = subprocess.Popen(cli_cmd(args, cwd, uri), cwd=cwd, env=cli_env(data_root, **(env or ONE_THREAD)),
                            stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, log


def finish(proc: subprocess.Popen, log, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_tracking_server_outage_fails_the_job_and_the_resumed_run_is_complete(tmp_path, data_root):
    store, port, epochs = tmp_path / "server", free_port(), 30
    uri = f"http://127.0.0.1:{port}"
    env = ONE_THREAD | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    args = [*LONG, f"trainer.max_epochs={epochs}"]
    server = start_mlflow_server(store, port)
    try:
        proc, log = launch(args, tmp_path, data_root, "first.log", uri, env)
        wait_for("a checkpoint", lambda: list((tmp_path / "mlruns" / "checkpoints").glob("*.pt")), proc=proc,
                 log=tmp_path / "first.log")
        stop_mlflow_server(server, signal.SIGKILL)  # the server dies for good while the job trains
        rc = finish(proc, log)
    finally:
        stop_mlflow_server(server)
    out = (tmp_path / "first.log").read_text()
    assert rc != 0 and "job failed" in out, out[-2000:]

    server = start_mlflow_server(store, port)  # back, same store: the same command resumes
    try:
        res = run_cli(args, tmp_path, data_root, uri=uri, env=env)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        assert "resuming run" in res.stdout + res.stderr
        (run,) = job_runs(uri)
        assert run.info.status == "FINISHED" and run.data.tags["resumes"] == "1"
        assert_complete(uri, run, epochs)
    finally:
        stop_mlflow_server(server)


def test_a_run_with_a_gap_in_its_history_ends_failed_not_finished(tmp_path):
    """The check that guards FINISHED: a metric value that never reached the store fails the run."""
    from rethink.errors import IncompleteRunError
    from rethink.jobs.outcome import check_complete
    from rethink.run import track

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    history = [{"step": 2 * e, "train/acc": 0.5, "epoch": e} for e in range(1, 4)]
    with pytest.raises(IncompleteRunError, match="metric values missing"):
        with open_run.start_run(uri, exp, "gappy", {"config_hash": "x"}) as run:
            run.log_metrics({"train/acc": 0.5, "epoch": 1}, step=2)
            run.log_metrics({"train/acc": 0.5, "epoch": 3}, step=6)  # epoch 2 never reached the store
            check_complete(run, history)
    (r,) = job_runs(uri)
    assert r.info.status == "FAILED" and "missing" in r.data.tags["failure_reason"]


def test_identical_sweeps_started_together_train_the_job_once(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    from rethink.run import track

    track.ensure_experiment(uri, "rethink")  # an initialised store, as after any earlier sweep
    args = [*LONG, "trainer.max_epochs=30"]
    procs = [launch(args, tmp_path, data_root, f"sweep{i}.log") for i in (1, 2)]
    codes = [finish(p, log) for p, log in procs]
    out = "".join((tmp_path / f"sweep{i}.log").read_text() for i in (1, 2))
    (run,) = job_runs(uri)  # one run, not two
    assert run.info.status == "FINISHED"
    assert 0 in codes
    assert "is running now" in out or "skip: an identical job" in out, out[-3000:]
    if codes != [0, 0]:
        assert "Traceback" not in out


def test_two_sweeps_on_a_new_store_both_keep_their_parent_run(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    procs = [launch(["-m", f"seed={s}", *TINY, "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}/s{s}"],
                    tmp_path, data_root, f"sweep{s}.log") for s in (0, 1)]
    codes = [finish(p, log) for p, log in procs]
    out = "".join((tmp_path / f"sweep{s}.log").read_text() for s in (0, 1))
    assert codes == [0, 0] and "Traceback" not in out and "raised" not in out, out[-3000:]
    parents = parent_runs(uri)
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    assert [p.data.tags["jobs_finished"] for p in parents] == ["1", "1"]


@pytest.mark.parametrize("sig, code, line", [(signal.SIGTERM, 143, "received signal SIGTERM"),
                                             (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_signal_ends_runs_killed_with_one_line_and_the_rerun_resumes(tmp_path, data_root, sig, code, line):
    uri, epochs = f"sqlite:///{tmp_path}/mlruns/mlflow.db", 40
    args = ["-m", *LONG, f"trainer.max_epochs={epochs}", f"hydra.sweep.dir={tmp_path}/sweep"]
    proc, log = launch(args, tmp_path, data_root, "sweep.log")
    wait_for("a checkpoint", lambda: list((tmp_path / "mlruns" / "checkpoints").glob("*.pt")), proc=proc,
             log=tmp_path / "sweep.log")
    proc.send_signal(sig)
    assert finish(proc, log) == code
    out = (tmp_path / "sweep.log").read_text()
    assert out.count(line) == 1 and "Traceback" not in out, out[-3000:]
    (run,) = job_runs(uri)
    assert run.info.status == "KILLED" and ("SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt") in \
        run.data.tags["failure_reason"]
    (parent,) = parent_runs(uri)
    assert parent.info.status == "FAILED"
    assert list((tmp_path / "mlruns" / "checkpoints").glob("*.pt"))  # kept for the resume
    if sig == signal.SIGTERM:
        res = run_cli(args, tmp_path, data_root, env=ONE_THREAD)
        assert res.returncode == 0 and "resuming run" in res.stdout + res.stderr
        (run,) = job_runs(uri)
        assert run.info.status == "FINISHED"
        assert_complete(uri, run, epochs)


def worker_pids(uri: str) -> list[int]:
    return [int(r.data.tags["process"].split(":")[1]) for r in job_runs(uri) if r.info.status == "RUNNING"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]) not in ("Z", "X")


JOBLIB = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1"]


def kill_leftovers(pids: list[int]) -> None:
    """SIGKILL the job processes a failed test leaves behind (they would train for hours)."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_joblib_workers_end_their_jobs_when_the_launcher_is_killed(tmp_path, data_root):
    # Jobs that outlast any test (100,000 epochs): both are running when the launcher dies, however far
    # apart joblib starts them on a loaded machine. The workers must end them, not train on as orphans.
    uri, pids = f"sqlite:///{tmp_path}/mlruns/mlflow.db", []
    proc, log = launch([*JOBLIB, *LONG, "trainer.max_epochs=100000", f"hydra.sweep.dir={tmp_path}/sweep"],
                       tmp_path, data_root, "sweep.log")
    try:
        pids = wait_for("two running jobs", lambda: len(worker_pids(uri)) == 2 and worker_pids(uri), proc=proc,
                        log=tmp_path / "sweep.log")
        proc.kill()  # kill -9 the launching process
        finish(proc, log)
        wait_for("the workers to end their jobs", lambda: not any(alive(p) for p in pids), timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        kill_leftovers(pids or worker_pids(uri))
    assert {r.info.status for r in job_runs(uri)} == {"KILLED"}


def test_a_killed_joblib_worker_stops_the_sweep_and_the_rerun_completes(tmp_path, data_root):
    # Both jobs have started and the running ones have checkpoints: kill -9 a worker. The other job is usually running
    # too (300 epochs take ~10 s here); on a loaded machine joblib may start it so late that it finished first.
    uri, epochs = f"sqlite:///{tmp_path}/mlruns/mlflow.db", 300
    args = [*JOBLIB, *LONG, f"trainer.max_epochs={epochs}", f"hydra.sweep.dir={tmp_path}/sweep"]
    proc, log = launch(args, tmp_path, data_root, "sweep.log")
    ckpts = tmp_path / "mlruns" / "checkpoints"

    def running_with_checkpoints() -> list:  # the RUNNING jobs, once every job is FINISHED or RUNNING with a checkpoint
        runs = job_runs(uri)
        running = [r for r in runs if r.info.status == "RUNNING"]
        ready = all((ckpts / f"{r.data.tags['config_hash']}.pt").exists() for r in running)
        settled = len(runs) == 2 and {r.info.status for r in runs} <= {"RUNNING", "FINISHED"}
        return running if settled and ready else []

    victim, *others = wait_for("both jobs started, the running ones with checkpoints", running_with_checkpoints,
                               proc=proc, log=tmp_path / "sweep.log")
    pids = [int(r.data.tags["process"].split(":")[1]) for r in (victim, *others)]
    os.kill(pids[0], signal.SIGKILL)
    assert finish(proc, log) != 0
    out = (tmp_path / "sweep.log").read_text()  # joblib's TerminatedWorkerError, printed by Hydra
    assert "TerminatedWorkerError" in out and "FAILED" in out.splitlines()[-1], out[-3000:]
    wait_for("the other worker to end", lambda: not any(alive(p) for p in pids), timeout=120)
    res = run_cli(args, tmp_path, data_root, env=ONE_THREAD, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = job_runs(uri)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert_complete(uri, run, epochs)
