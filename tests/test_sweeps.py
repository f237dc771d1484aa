"""Sweeps that survive: Hydra launchers (joblib, submitit_local, Ray) into one MLflow store with a
parent run, through SQLite or a local `mlflow server`; kill -9 and resume; a diverging job.

Real subprocess multiruns on tiny real CIFAR-10 subsets, on the CPU.
"""

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time

import mlflow
import pytest
from conftest import cli_cmd, cli_env, run_cli, wait_for

from rethink.run import track

TINY = ["dataset.train_size=200", "dataset.test_size=100"]  # 200 / 128 -> 2 SGD steps per epoch
# One thread per job: the machine's cores are shared by parallel jobs, and a fixed thread count
# keeps CPU results bit-identical between processes (the resume test compares them exactly).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false"],
}
CURVES = ["train/loss", "train/acc", "train/eval_loss", "test/loss", "test/acc", "lr"]


def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlruns/mlflow.db"


def sweep_runs(uri: str) -> tuple[list, list]:
    """(parent runs, job runs) of the store's `rethink` experiment."""
    c = track.client(uri)
    exp = c.get_experiment_by_name("rethink")
    runs = c.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [r for r in runs if r.data.tags.get("kind") == "sweep"], [r for r in runs if r.data.tags.get("kind") != "sweep"]


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in track.client(uri).get_metric_history(run_id, key)]


def check_sweep(uri: str, jobs: int, epochs: int) -> None:
    """One FINISHED parent run; `jobs` FINISHED children under it, each with its full per-epoch history."""
    parents, children = sweep_runs(uri)
    assert len(parents) == 1, [p.info.run_name for p in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["jobs_finished"] == str(jobs) and parent.data.tags["jobs_failed"] == "0"
    assert len(children) == jobs and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(int(r.data.tags["job_num"]) for r in children) == list(range(jobs))
    assert len({r.data.tags["config_hash"] for r in children}) == jobs
    for r in children:
        for key in CURVES:
            assert [s for s, _ in history(uri, r.info.run_id, key)] == [2 * e for e in range(1, epochs + 1)], key
    artifacts = {a.path for a in track.client(uri).list_artifacts(children[0].info.run_id)}
    assert {"config.yaml", "final_metrics.json", "learning_curve.png"} <= artifacts


@pytest.mark.slow
@pytest.mark.parametrize("launcher, store", [("joblib", "sqlite"), ("submitit_local", "sqlite"), ("joblib", "server")])
def test_parallel_sweep_one_store_one_parent_complete_children(tmp_path, data_root, request, launcher, store):
    uri = request.getfixturevalue("mlflow_server") if store == "server" else sqlite_uri(tmp_path)
    res = run_cli(["-m", *LAUNCHERS[launcher], "seed=0,1,2,3", "corruption=0,1.0", *TINY, "trainer.max_epochs=2",
                   f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root, timeout=900, uri=uri, env=ONE_THREAD)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "[ERROR]" not in out, out[-3000:]
    assert "sweep: 8 jobs FINISHED, 0 FAILED/KILLED, 0 skipped" in out
    check_sweep(uri, jobs=8, epochs=2)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                    reason="hydra-ray-launcher not installed (pip install -e '.[ray]')")
def test_ray_launcher_sweep(tmp_path, data_root):
    uri = sqlite_uri(tmp_path)
    res = run_cli(["-m", *LAUNCHERS["ray"], "seed=0,1", *TINY, "trainer.max_epochs=2", f"hydra.sweep.dir={tmp_path}/sweep"],
                  tmp_path, data_root, timeout=600, uri=uri, env=ONE_THREAD)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    check_sweep(uri, jobs=2, epochs=2)


@pytest.mark.slow
def test_killed_job_resumes_from_checkpoint_and_matches_uninterrupted_run(tmp_path, data_root):
    # The long job: 400 epochs, ~15 s alone here, so it is still running when the short one has finished,
    # however far apart (seconds, on a loaded machine) joblib starts the two.
    uri, epochs = sqlite_uri(tmp_path), 400
    sweep = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"trainer.max_epochs=2,{epochs}",
             "trainer.checkpoint_every=5", "trainer.stop_at_target=false", *TINY]
    log = open(tmp_path / "sweep1.log", "w")
    proc = subprocess.Popen(cli_cmd([*sweep, f"hydra.sweep.dir={tmp_path}/sweep1"], tmp_path), cwd=tmp_path,
                            env=cli_env(data_root, **ONE_THREAD), stdout=log, stderr=subprocess.STDOUT)
    try:
        # Kill -9 the long job's worker once the short job FINISHED and the long one wrote a checkpoint.
        ckpts, short_done = tmp_path / "mlruns" / "checkpoints", "stopped (max_epochs) after 2 epochs"
        wait_for("a checkpoint and a FINISHED job", proc=proc, log=tmp_path / "sweep1.log",
                 ok=lambda: list(ckpts.glob("*.pt")) and short_done in (tmp_path / "sweep1.log").read_text())
        (running,) = [r for r in sweep_runs(uri)[1] if r.info.status == "RUNNING"]
        os.kill(int(running.data.tags["process"].split(":")[1]), signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode != 0
    parents, children = sweep_runs(uri)
    killed = track.client(uri).get_run(running.info.run_id)
    assert killed.info.status == "KILLED" and "killed" in killed.data.tags["failure_reason"]
    assert parents[0].info.status == "FAILED" and parents[0].data.tags["jobs_failed"] == "1"
    assert parents[0].data.tags["jobs_finished"] == "1"

    # Re-run the sweep: the finished job is skipped, the killed one continues its own run.
    res = run_cli([*sweep, f"hydra.sweep.dir={tmp_path}/sweep2"], tmp_path, data_root, uri=uri, env=ONE_THREAD)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert out.count("skip: an identical job") == 1 and out.count("resuming run") == 1
    parents, children = sweep_runs(uri)
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}  # no new run
    resumed = track.client(uri).get_run(running.info.run_id)
    tags = resumed.data.tags
    assert resumed.info.status == "FINISHED" and tags["resumes"] == "1" and "failure_reason" not in tags
    assert 5 <= int(tags["resumed_from_epoch"]) < epochs and int(tags["resumed_from_epoch"]) % 5 == 0
    newest = max(parents, key=lambda p: p.info.start_time)
    assert tags["mlflow.parentRunId"] == newest.info.run_id and newest.info.status == "FINISHED"
    assert newest.data.tags["jobs_finished"] == "1" and newest.data.tags["jobs_skipped"] == "1"
    assert not list((tmp_path / "mlruns" / "checkpoints").glob("*.pt"))  # removed once FINISHED

    # The same job never interrupted, in a store of its own: the very same numbers, epoch by epoch.
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    ref = run_cli([f"trainer.max_epochs={epochs}", "trainer.checkpoint_every=0", "trainer.stop_at_target=false", *TINY],
                  ref_dir, data_root, env=ONE_THREAD)
    assert ref.returncode == 0, ref.stderr[-3000:]
    (reference,) = sweep_runs(sqlite_uri(ref_dir))[1]
    assert reference.data.tags["config_hash"] == tags["config_hash"]
    for key in CURVES:
        got, want = history(uri, resumed.info.run_id, key), history(sqlite_uri(ref_dir), reference.info.run_id, key)
        assert got == want, key  # exact: steps never duplicated, values bit-identical
    assert len(history(uri, resumed.info.run_id, "test/acc")) == epochs


@pytest.mark.slow
def test_diverging_job_fails_with_reason_parent_counts_it_and_the_sweep_goes_on(tmp_path, data_root):
    uri = sqlite_uri(tmp_path)
    res = run_cli(["-m", *LAUNCHERS["joblib"], "trainer.lr=1e9,0.01", *TINY, "trainer.max_epochs=2",
                   f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root, uri=uri, env=ONE_THREAD)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "training diverged" in out
    assert "sweep: 1 jobs FINISHED, 1 FAILED/KILLED, 0 skipped" in out
    parents, children = sweep_runs(uri)
    by_lr = {r.data.params["trainer.lr"]: r for r in children}
    assert by_lr["1000000000.0"].info.status == "FAILED"
    assert "diverged" in by_lr["1000000000.0"].data.tags["failure_reason"]
    assert by_lr["0.01"].info.status == "FINISHED"
    (parent,) = parents
    assert parent.info.status == "FAILED" and parent.data.tags["jobs_failed"] == "1"
    assert parent.data.tags["jobs_finished"] == "1"


def test_running_runs_are_stale_only_when_their_process_is_gone(tmp_path):
    from rethink.run import lifecycle, track

    uri = sqlite_uri(tmp_path)
    exp = track.ensure_experiment(uri, "rethink")
    c = track.client(uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}:1"
    ids = {name: c.create_run(exp, tags={"config_hash": "abc", "process": p}).info.run_id
           for name, p in [("live", lifecycle.process_id()), ("dead", dead), ("elsewhere", "other-host:1:1")]}
    runs = {r.info.run_id: r for r in lifecycle.unfinished_runs(uri, exp, "abc")}
    assert not lifecycle.is_stale(runs[ids["live"]]) and lifecycle.is_stale(runs[ids["dead"]])
    assert lifecycle.is_stale(runs[ids["elsewhere"]])  # another host: cannot check, taken as gone
    assert lifecycle.process_alive(lifecycle.process_id()) is True
    # A new sweep ends the parent runs of sweeps whose launching process died: KILLED, with the reason.
    old = c.create_run(exp, tags={"kind": "sweep", "process": dead}).info.run_id
    new = lifecycle.open_sweep(uri, exp, "multirun/x", {})
    assert c.get_run(old).info.status == "KILLED" and "died" in c.get_run(old).data.tags["failure_reason"]
    assert c.get_run(new).info.status == "RUNNING" and c.get_run(new).info.run_name == "sweep-multirun/x"


@pytest.mark.slow
def test_a_job_killed_before_its_first_checkpoint_is_trained_again_in_a_new_run(tmp_path, data_root):
    args = [*TINY, "trainer.max_epochs=2"]
    assert run_cli(args, tmp_path, data_root, env=ONE_THREAD).returncode == 0
    uri = sqlite_uri(tmp_path)
    (first,) = sweep_runs(uri)[1]
    # Make it look like a job that was killed: RUNNING, its process gone, no checkpoint.
    c = track.client(uri)
    c.update_run(first.info.run_id, status="RUNNING")
    c.set_tag(first.info.run_id, "process", f"{socket.gethostname()}:999999999:1")
    res = run_cli(args, tmp_path, data_root, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = {r.info.run_id: r for r in sweep_runs(uri)[1]}
    assert len(runs) == 2 and runs[first.info.run_id].info.status == "KILLED"
    assert "no checkpoint" in runs[first.info.run_id].data.tags["failure_reason"]
    (again,) = [r for r in runs.values() if r.info.run_id != first.info.run_id]
    assert again.info.status == "FINISHED" and again.data.tags["config_hash"] == first.data.tags["config_hash"]


def test_a_corrupted_checkpoint_is_set_aside_and_the_job_trains_afresh(tmp_path, data_root):
    from rethink.run import lifecycle

    uri, epochs = sqlite_uri(tmp_path), 120
    args = [f"trainer.max_epochs={epochs}", "trainer.checkpoint_every=5", "trainer.stop_at_target=false", *TINY]
    log = open(tmp_path / "run1.log", "w")
    proc = subprocess.Popen(cli_cmd(args, tmp_path), cwd=tmp_path, env=cli_env(data_root, **ONE_THREAD), stdout=log,
                            stderr=subprocess.STDOUT)
    ckpts = tmp_path / "mlruns" / "checkpoints"
    try:
        (ckpt,) = wait_for("a checkpoint", proc=proc, log=tmp_path / "run1.log", ok=lambda: list(ckpts.glob("*.pt")))
        (running,) = sweep_runs(uri)[1]
        os.kill(proc.pid, signal.SIGKILL)  # a single job runs in the launching process
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert running.data.tags["process"].split(":")[1] == str(proc.pid)
    # Flip one byte of the weights (torch.load would still accept the file) and leave temporary
    # files behind as interrupted writes do: two of dead writers, one of a live process.
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    old = time.time() - 7200
    dead, legacy, live = (ckpts / f".{ckpt.name}.{socket.gethostname()}:{gone.pid}:1.tmp",
                          ckpts / f".{ckpt.name}.4242.tmp", ckpts / f".{ckpt.name}.{lifecycle.process_id()}.tmp")
    for f in (dead, legacy, live):
        f.write_bytes(b"partial")
    os.utime(legacy, (old, old))

    res = run_cli(args, tmp_path, data_root, uri=uri, env=ONE_THREAD)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "resuming run" not in out and "diverged" not in out
    assert f"checkpoint {ckpt} is unusable (its checksum does not match" in out and "trains afresh" in out
    # 2, or 3 when the kill -9 above landed while the first run was writing its next checkpoint
    assert re.search(r"removed [23] temporary checkpoint file\(s\)", out), out[:3000]
    assert not dead.exists() and not legacy.exists() and live.exists()
    assert (ckpts / f"{ckpt.name}.corrupt").is_file() and not ckpt.exists()  # set aside; the new one removed once FINISHED
    runs = {r.info.run_id: r for r in sweep_runs(uri)[1]}
    killed = runs.pop(running.info.run_id)
    assert killed.info.status == "KILLED"
    assert "unusable (its checksum does not match" in killed.data.tags["failure_reason"]
    assert "trained again in a new run" in killed.data.tags["failure_reason"]
    (fresh,) = runs.values()
    assert fresh.info.status == "FINISHED" and fresh.data.tags["config_hash"] == killed.data.tags["config_hash"]
    assert "resumes" not in fresh.data.tags
    assert [s for s, _ in history(uri, fresh.info.run_id, "test/acc")] == [2 * e for e in range(1, epochs + 1)]


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_credentials_in_the_tracking_uri_appear_in_no_param_tag_artifact_or_console_line(
        tmp_path, data_root, mlflow_server, launcher):
    password = "hunter2"
    uri = mlflow_server.replace("http://", f"http://alice:{password}@")
    # One job diverges: Hydra's failure report (overrides, exception) goes to the console too.
    res = run_cli(["-m", *LAUNCHERS.get(launcher, []), "trainer.lr=1e9,0.01", *TINY, "trainer.max_epochs=2",
                   f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root, uri=uri, env=ONE_THREAD)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "sweep: 1 jobs FINISHED, 1 FAILED/KILLED, 0 skipped" in out, out[-3000:]
    assert "Error executing job with overrides" in out and "http://***@127.0.0.1" in out
    assert password not in out
    parents, children = sweep_runs(mlflow_server)
    assert len(parents) == 1 and len(children) == 2
    for r in parents + children:
        assert password not in repr(r.data.params) + repr(r.data.tags), r.info.run_name
    for r in children:
        assert "mlflow.tracking_uri" not in r.data.params  # where runs go is not part of the identity
        assert "mlflow.tracking_uri=http\\://***@" in r.data.tags["overrides"]
        for artifact in ("config.yaml", "overrides.yaml"):
            local = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path=artifact,
                                                        dst_path=str(tmp_path), tracking_uri=mlflow_server)
            text = open(local).read()
            assert password not in text and "***@127.0.0.1" in text, artifact
