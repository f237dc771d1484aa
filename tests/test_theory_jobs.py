"""The theory as Hydra jobs: `python -m rethink task=expressivity|kernel|minnorm`, tracked in MLflow."""

import json
from pathlib import Path

import mlflow
import pytest
from conftest import composed, run_cli, search_runs
from omegaconf import open_dict

from rethink import track
from rethink.errors import RethinkError
from rethink.theory import jobs

THEORY = "rethink-theory"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow store for the CLI runs of this module: its schema is created once (seconds)."""
    return tmp_path_factory.mktemp("theory-store")


def theory_runs(store: Path, task: str):
    runs = search_runs(store, THEORY)
    return runs[runs["params.task.name"] == task]


def artifact(run_id: str, path: str, tmp_path: Path) -> dict:
    local = mlflow.MlflowClient().download_artifacts(run_id, path, str(tmp_path))
    return json.loads(Path(local).read_text())


def test_expressivity_multirun_fits_random_labels_with_2n_plus_d_weights(store, tmp_path, data_root):
    res = run_cli(["-m", "task=expressivity", "task.data=gaussian,mnist", "task.train_size=300", "task.test_size=100",
                   "task.targets=random_labels", f"hydra.sweep.dir={tmp_path}/sweep"], store, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = theory_runs(store, "expressivity").set_index("params.task.data")
    assert set(runs["status"]) == {"FINISHED"} and len(runs) == 2
    assert set(runs["tags.mlflow.runName"]) == {"expressivity-gaussian-random_labels-n300-float64-s0",
                                               "expressivity-mnist-random_labels-n300-float64-s0"}
    for data, d in (("gaussian", 100), ("mnist", 784)):
        run = runs.loc[data]
        assert run["metrics.n"] == 300 and run["metrics.d"] == d and run["metrics.num_weights"] == 2 * 300 + d
        assert run["metrics.max_abs_error_prefix"] < 1e-6 and run["metrics.max_abs_error_direct"] < 1e-3
        assert run["metrics.train_accuracy"] == 1.0 and run["metrics.min_gap"] > 0 and run["metrics.max_abs_weight"] > 1
        assert run["metrics.fit_seconds"] >= 0 and run["params.task.train_size"] == "300.0"
        for tag in ("config_hash", "git_commit", "device"):
            assert run[f"tags.{tag}"], tag
    assert 0 <= runs.loc["mnist", "metrics.test_accuracy"] <= 0.4  # random labels: nothing learned
    assert "metrics.test_accuracy" not in runs or runs["metrics.test_accuracy"].isna()["gaussian"]
    results = artifact(runs.loc["mnist", "run_id"], "results.json", tmp_path)
    assert results["metrics"]["num_weights"] == 1384 and sum(results["test_prediction_histogram"]) == 100
    assert search_runs(store, "rethink").query("`tags.kind` != 'sweep'").empty  # never among training runs


def test_kernel_job_interpolates_mnist(store, data_root):
    res = run_cli(["task=kernel", "task.data=mnist", "task.train_size=500", "task.test_size=200", "task.threads=1"],
                  store, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    run = theory_runs(store, "kernel").iloc[0]
    assert run["status"] == "FINISHED" and run["tags.mlflow.runName"] == "kernel-mnist-raw-true_labels-n500-float32-s0"
    assert run["metrics.n"] == 500 and run["metrics.test_n"] == 200 and run["metrics.gamma"] == 0.02
    assert run["metrics.test_error"] < 0.3 and run["metrics.train_error"] == 0.0  # interpolates its labels
    assert run["metrics.rkhs_norm"] > 0 and run["metrics.jitter"] >= 0
    for key in ("build_seconds", "factor_seconds", "solve_seconds", "predict_seconds"):
        assert run[f"metrics.{key}"] >= 0, key


def test_minnorm_job_logs_distance_per_epoch_and_is_skipped_when_finished(store, data_root):
    args = ["task=minnorm", "task.n=20", "task.d=100", "task.epochs=60"]
    res = run_cli(args, store, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    run = theory_runs(store, "minnorm").iloc[0]
    assert run["status"] == "FINISHED" and run["metrics.final_relative_distance"] < 1e-6
    assert abs(run["metrics.norm_ratio"] - 1) < 1e-6
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run["run_id"], "relative_distance")
    assert sorted(m.step for m in history) == list(range(61))  # step = epoch, 0 = the start
    assert {m.step: m.value for m in history}[0] == 1.0  # from w = 0
    assert len(client.get_metric_history(run["run_id"], "residual")) == 61
    assert {"distance.png", "results.json", "config.yaml"} <= {a.path for a in client.list_artifacts(run["run_id"])}

    # The same job again (in-process, to save a start-up) is skipped: it already FINISHED.
    cfg = composed(*args, f"mlflow.tracking_uri=sqlite:///{store}/mlruns/mlflow.db")
    assert jobs.run(cfg)["final_relative_distance"] == run["metrics.final_relative_distance"]
    assert len(theory_runs(store, "minnorm")) == 1


def test_bad_task_value_gets_one_clear_line_and_no_run(tmp_path, data_root):
    res = run_cli(["task=expressivity", "task.dtype=float16"], tmp_path, data_root)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "task.dtype='float16' is not allowed: use float64 or float32" in res.stderr
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or search_runs(tmp_path, THEORY).empty


@pytest.mark.parametrize("overrides, message", [
    (["task=kernel", "task.train_size=0"], "task.train_size=0 is not allowed: use null (all) or an integer >= 10"),
    (["task=expressivity", "task.data=nope"], "task.data='nope' is not allowed: use cifar10, mnist or gaussian"),
    (["task=kernel", "task.targets=random_reals"], "task.targets='random_reals' is not allowed: use true_labels or random_labels"),
    (["task=kernel", "task.features=random_conv"], "task.features='random_conv' is not allowed with task.data='mnist'"),
    (["task=expressivity", "task.data=gaussian"], "task.targets='true_labels' is not allowed with task.data=gaussian"),
    (["task=minnorm", "task.lr=-1"], "task.lr=-1 is not allowed: use null or a number > 0"),
    (["task=minnorm", "task.batch_size=30", "task.n=20"], "task.batch_size=30 is not allowed: use an integer in [1, task.n=20]"),
    (["task=kernel", "task.name=nope"], "task.name='nope' is not known"),
])
def test_bad_task_values_name_the_value_and_what_is_allowed(overrides, message):
    with pytest.raises(RethinkError) as err:
        jobs.validate(composed(*overrides).task)
    assert message in str(err.value)


def test_kernel_refuses_a_matrix_larger_than_the_free_memory(monkeypatch, data_root):
    monkeypatch.setenv("RETHINK_DATA", str(data_root))
    monkeypatch.setattr(jobs, "available_bytes", lambda device: 2**30)
    cfg = composed("task=kernel", "task.train_size=null", "task.device=cpu")
    with pytest.raises(RethinkError, match=r"task.train_size=null \(n=60000\) needs 13.4 GiB .* only 1.0 GiB is free"):
        jobs.kernel(cfg, jobs.validate(cfg.task))


def test_task_group_left_the_identity_of_training_jobs_unchanged():
    for overrides in ([], ["task=train"], ["model=alexnet", "corruption=random_pixels", "scale=paper", "seed=3"]):
        cfg = composed(*overrides)
        assert cfg.task.name == "train"
        without = cfg.copy()
        with open_dict(without):
            del without["task"]  # the config as it was before the task group existed
        assert track.config_hash(cfg) == track.config_hash(without)
    assert track.config_hash(composed()) != track.config_hash(composed("seed=1"))


def test_theory_identity_is_the_task_node_without_device_or_threads():
    base = composed("task=kernel").task
    assert jobs.identity(base) == jobs.identity(composed("task=kernel", "task.device=cpu", "task.threads=1").task)
    assert jobs.identity(base) == jobs.identity(composed("task=kernel", "model=alexnet").task)
    assert jobs.identity(base) != jobs.identity(composed("task=kernel", "task.train_size=2000").task)
    assert jobs.identity(base) != jobs.identity(composed("task=expressivity").task)
