"""The real command line in subprocesses: Hydra multiruns into a temporary SQLite MLflow store."""

import pytest
from conftest import run_cli, search_runs

TINY = ["dataset.train_size=300", "dataset.test_size=100", "trainer.max_epochs=3"]


@pytest.mark.slow
def test_multirun_corruption_levels_write_finished_runs(tmp_path, data_root):
    res = run_cli(["-m", "corruption=0,1.0", *TINY, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = search_runs(tmp_path)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["params.corruption.level"]) == ["0.0", "1.0"]  # a float key stays a float, given as 0 too
    for col in ["params.corruption.kind", "params.model.name", "params.dataset.name", "params.num_params",
                "metrics.train/loss", "metrics.train/acc", "metrics.test/loss", "metrics.test/acc",
                "metrics.generalization_gap", "metrics.lr", "metrics.wall_time", "metrics.images_per_s",
                "tags.config_hash", "tags.git_commit", "tags.device", "tags.sweep_dir", "tags.job_num"]:
        assert runs[col].notna().all(), col
    assert set(runs["params.model.name"]) == {"mlp_1x512"} and set(runs["params.num_params"]) == {"1209866"}
    assert set(runs["tags.job_num"]) == {"0", "1"} and runs["tags.config_hash"].nunique() == 2
    random = runs[runs["params.corruption.level"] == "1.0"].iloc[0]
    assert random["metrics.train/acc_corrupted"] >= 0 and random["metrics.train/acc_clean"] >= 0
    gap = random["metrics.train/acc"] - random["metrics.test/acc"]
    assert abs(random["metrics.generalization_gap"] - gap) < 1e-9
    assert random["metrics.best_test_acc"] >= random["metrics.test/acc"] and random["metrics.best_test_acc_step"] in (3, 6, 9)
    assert random["metrics.early_stopping_gain"] == pytest.approx(random["metrics.best_test_acc"] - random["metrics.test/acc"])
    import mlflow

    client = mlflow.MlflowClient()
    history = client.get_metric_history(random["run_id"], "test/acc")
    assert [m.step for m in history] == [3, 6, 9]  # 300 images / 128 = 3 steps per epoch, 3 epochs
    artifacts = {a.path for a in client.list_artifacts(random["run_id"])}
    assert {"config.yaml", "overrides.yaml", "learning_curve.png", "final_metrics.json"} <= artifacts
    # The run record: MLflow's context tags, purpose tags, the description, the dataset inputs.
    assert set(runs["tags.budget"]) == {"custom"} and set(runs["tags.scale"]) == {"cpu"}  # TINY overrides the budget
    assert runs["tags.mlflow.source.name"].str.endswith("__main__.py").all() and runs["tags.mlflow.user"].notna().all()
    note = random["tags.mlflow.note.content"]
    assert "Randomization test" in note and "100% of the training labels replaced" in note and "| test accuracy |" in note
    inputs = client.get_run(random["run_id"]).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs}
    assert set(contexts) == {"training", "evaluation", "training, after corruption"}
    assert contexts["training"].name == "cifar10-train" and contexts["training"].source.endswith("cifar10")
    clean = client.get_run(runs[runs["params.corruption.level"] == "0.0"].iloc[0]["run_id"]).inputs.dataset_inputs
    assert {i.dataset.digest for i in clean} & {d.digest for d in contexts.values()} == {
        contexts["training"].digest, contexts["evaluation"].digest}  # same data; only the corrupted labels differ
    out = res.stderr + res.stdout
    assert "epoch" in out and "train_acc" in out and " 3/3 " in out  # per-epoch table, epoch N/max
    assert set(runs["tags.mlflow.runName"]) == {"p=0 mlp_1x512 cpu", "p=1 mlp_1x512 cpu"}
    assert f"MLflow run {random['run_id']}, browse with `make ui` at http://127.0.0.1:5000/#/experiments/" in out
    assert f"(run {random['run_id']} FINISHED)" in out

    # Re-running the same sweep skips the FINISHED jobs instead of training again.
    again = run_cli(["-m", "corruption=0,1.0", *TINY, f"hydra.sweep.dir={tmp_path}/sweep2"], tmp_path, data_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(search_runs(tmp_path)) == 2 and (again.stdout + again.stderr).count("skip: an identical job") == 2


@pytest.mark.slow
def test_pixel_corruption_single_run(tmp_path, data_root):
    res = run_cli(["model=mlp_3x512", "corruption=random_pixels", "corruption.level=1.0",
                   "regularizer=[weight_decay,random_crop]", *TINY], tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    run = search_runs(tmp_path).iloc[0]
    assert run["status"] == "FINISHED" and run["params.corruption.kind"] == "random_pixels"
    assert run["params.regularizer.weight_decay"] == "0.0005" and run["params.regularizer.random_crop"] == "True"


@pytest.mark.parametrize("args, message", [
    (["corruption.level=1.5"], "corruption.level=1.5 is not allowed: use a number in [0, 1]"),
    (["model=nope"], "Could not find 'model/nope'"),
    (["trainer.batch_size=0"], "trainer.batch_size=0 is not allowed: use an integer > 0"),
    (["dataset.root=/nonexistent/rethink-data", "dataset.download=false"], "dataset.root=/nonexistent/rethink-data does not hold"),
    (["dataset=imagefolder", "dataset.root=/nonexistent/tree", "dataset.num_classes=3", "dataset.input_shape=[3,8,8]"],
     "dataset.root=/nonexistent/tree has no train/ and test/ folders"),
])
def test_bad_input_gets_one_clear_line_and_no_run(tmp_path, data_root, args, message):
    res = run_cli([*args, *TINY], tmp_path, data_root)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    db = tmp_path / "mlruns" / "mlflow.db"
    assert not db.exists() or search_runs(tmp_path).empty  # nothing half-written


@pytest.mark.slow
def test_diverging_job_fails_with_reason_and_the_sweep_goes_on(tmp_path, data_root):
    res = run_cli(["-m", "trainer.lr=1e9,0.01", *TINY], tmp_path, data_root)
    assert res.returncode != 0 and "training diverged" in res.stderr and "Traceback" not in res.stderr
    runs = search_runs(tmp_path).set_index("params.trainer.lr")
    assert runs.loc["1000000000.0", "status"] == "FAILED"  # trainer.lr=1e9 overrides model.lr: logged under its own key
    assert "diverged" in runs.loc["1000000000.0", "tags.failure_reason"]
    assert runs.loc["0.01", "status"] == "FINISHED"
