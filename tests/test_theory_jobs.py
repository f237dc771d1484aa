"""The theory as Hydra jobs: `python -m rethink task=expressivity|kernel|minnorm`, tracked in MLflow."""

import dataclasses
import json
from pathlib import Path

import mlflow
import pytest
from conftest import composed, run_cli, search_runs
from omegaconf import OmegaConf, open_dict

from rethink.errors import RethinkError
from rethink.run import identity
from rethink.theory import jobs, options, tasks

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
        assert run["metrics.fit_seconds"] >= 0 and run["params.task.train_size"] == "300"
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


@pytest.mark.parametrize("override, message", [
    ("task.dtype=float16", "task.dtype='float16' is not allowed: use float64 or float32"),  # a wrong choice
    ("task.train_size=abc", "task.train_size='abc' is not allowed: use null (all) or an integer >= 10"),  # a wrong type
])
def test_bad_task_value_gets_one_clear_line_and_no_run(tmp_path, data_root, override, message):
    res = run_cli(["task=expressivity", override], tmp_path, data_root)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert message in res.stderr
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
    monkeypatch.setattr(tasks, "available_bytes", lambda device: 2**30)
    cfg = composed("task=kernel", "task.train_size=null", "task.device=cpu")
    with pytest.raises(RethinkError, match=r"task.train_size=null \(n=60000\) needs 13.4 GiB .* only 1.0 GiB is free"):
        jobs.RUNNERS["kernel"](cfg, jobs.validate(cfg.task))


def test_task_group_left_the_identity_of_training_jobs_unchanged():
    for overrides in ([], ["task=train"], ["model=alexnet", "corruption=random_pixels", "scale=paper", "seed=3"]):
        cfg = composed(*overrides)
        assert cfg.task.name == "train"
        without = cfg.copy()
        with open_dict(without):
            del without["task"]  # the config as it was before the task group existed
        assert identity.config_hash(cfg) == identity.config_hash(without)
    assert identity.config_hash(composed()) != identity.config_hash(composed("seed=1"))


def test_theory_identity_is_the_task_node_without_device_or_threads():
    base = composed("task=kernel").task
    assert jobs.identity(base) == jobs.identity(composed("task=kernel", "task.device=cpu", "task.threads=1").task)
    assert jobs.identity(base) == jobs.identity(composed("task=kernel", "model=alexnet").task)
    assert jobs.identity(base) != jobs.identity(composed("task=kernel", "task.train_size=2000").task)
    assert jobs.identity(base) != jobs.identity(composed("task=expressivity").task)


@pytest.mark.parametrize("overrides, expected", [
    (("task=kernel",), "5de95f10427325ce"),
    (("task=expressivity", "task.data=gaussian"), "a8dc39ca6433beaf"),
    (("task=minnorm", "task.start=random"), "e81c8b53e7b8defd"),
])
def test_theory_identity_hashes_are_pinned(monkeypatch, overrides, expected):
    """The identity of theory runs already in MLflow stores: if it changed, every FINISHED job would run again."""
    monkeypatch.delenv("RETHINK_DATA", raising=False)  # the task node must not depend on the data root
    assert jobs.identity(composed(*overrides).task) == expected


@pytest.mark.parametrize("name, cls", [("expressivity", options.ExpressivityOptions),
                                       ("kernel", options.KernelOptions), ("minnorm", options.MinnormOptions)])
def test_option_defaults_are_the_yaml_defaults(name, cls):
    yaml = OmegaConf.to_container(composed(f"task={name}").task, resolve=True)
    defaults = dataclasses.asdict(cls())
    assert list(defaults) == list(yaml)  # the same keys, in the YAML's order
    for key, value in yaml.items():
        assert (type(defaults[key]), defaults[key]) == (type(value), value), key
    assert options.parse(composed(f"task={name}").task) == cls()
    assert jobs.validate(composed(f"task={name}").task) == defaults


@pytest.mark.parametrize("overrides, message", [
    (["task=kernel", "task.train_size=abc"], "task.train_size='abc' is not allowed: use null (all) or an integer >= 10"),
    (["task=minnorm", "task.epochs=1.5"], "task.epochs=1.5 is not allowed: use an integer >= 1"),
    (["task=minnorm", "task.n=true"], "task.n=True is not allowed: use an integer >= 1"),
    (["task=kernel", "task.gamma=abc"], "task.gamma='abc' is not allowed: use null or a number > 0"),
    (["task=kernel", "task.jitter=[1]"], "task.jitter=[1] is not allowed: use a number >= 0"),
    (["task=kernel", "task.device=tpu"], "task.device='tpu' is not allowed: use auto, cpu or cuda"),
    (["task=kernel", "task.dtype=16"], "task.dtype=16 is not allowed: use float64 or float32"),
    (["task=minnorm", "task.start=middle"], "task.start='middle' is not allowed: use zero or random"),
    (["task=expressivity", "task.targets=none"],
     "task.targets='none' is not allowed: use true_labels, random_labels or random_reals"),
    (["task=kernel", "+task.trian_size=100"], "task.trian_size=100 is not known for task=kernel: its options are "
     "name, data, train_size, test_size, targets, features, num_filters, kernel_size, pool, gamma, dtype, device, "
     "jitter, threads, seed"),
])
def test_a_wrong_type_or_choice_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(RethinkError) as err:
        options.parse(composed(*overrides).task)
    assert str(err.value) == message


def test_options_validate_themselves_and_round_trip_through_the_dict():
    with pytest.raises(RethinkError, match="task.batch_size=6 is not allowed: use an integer in \\[1, task.n=5\\]"):
        options.MinnormOptions(n=5, batch_size=6)
    with pytest.raises(RethinkError, match="task.features='gabor' is not allowed with task.data='cifar10'"):
        options.KernelOptions(data="cifar10", features="gabor")
    assert options.ExpressivityOptions(data="gaussian", targets="random_reals", train_size=1).train_size == 1
    typed = options.parse(composed("task=minnorm", "task.lr=1", "task.n=5").task)
    assert typed.lr == 1.0 and isinstance(typed.lr, float)  # as its type: a float
    opts = jobs.validate(typed)
    assert opts["name"] == "minnorm" and json.loads(json.dumps(opts)) == opts  # run() logs it in results.json
    assert options.MinnormOptions.of(opts) == typed
    assert jobs.run_name(opts) == jobs.run_name(typed) == "minnorm-n5-d1000-zero-s0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.lr = 2.0
