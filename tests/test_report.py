"""The report: known runs in a synthetic MLflow store -> known tables; and one real preset end to end."""

import math

import pytest
from conftest import run_cli

from rethink import report, track


def log_run(uri, exp, *, model, level, train, test, seed=0, kind="labels", crop=False, wd=0.0, fit_step=None,
            losses=(2.0, 1.0, 0.5), scale="cpu"):
    params = {"dataset.name": "cifar10", "choice.scale": scale, "model.name": model, "corruption.kind": kind,
              "corruption.level": level, "regularizer.random_crop": crop, "regularizer.flip": False,
              "regularizer.weight_decay": wd, "regularizer.dropout": 0.0, "seed": seed, "train_examples": 1000,
              "trainer.target_train_acc": 0.999}
    identity = f"{model}-{kind}-{level}-{crop}-{wd}-{seed}-{scale}"
    with track.start_run(uri, exp, identity, {"config_hash": identity, "device": "cpu", "stop_reason": "target"}) as run:
        run.log_params(params)
        for i, loss in enumerate(losses, start=1):
            run.log_metrics({"train/loss": loss, "train/acc": train * i / len(losses), "test/acc": test, "epoch": i}, step=100 * i)
        final = {"epochs": len(losses), "steps": 100 * len(losses)} | ({"fit_step": fit_step} if fit_step else {})
        run.log_metrics(final, step=100 * len(losses))


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.50, fit_step=100)
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.54, fit_step=100, seed=1)
    log_run(uri, exp, model="mlp_1x512", level=0.5, train=1.0, test=0.30, fit_step=200)
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=0.98, test=0.10)  # never fitted: censored
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.51, wd=0.0005, fit_step=100)
    log_run(uri, exp, model="inception", level=1.0, train=1.0, test=0.1, wd=0.0005, fit_step=300)
    for kind in ("shuffled_pixels", "gaussian"):
        log_run(uri, exp, model="inception", level=1.0, kind=kind, train=1.0, test=0.1, fit_step=300)
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.99, scale="paper")  # other scale
    return uri


def test_tables_from_known_runs(store):
    df = report.load_runs(store, scale="cpu")
    assert len(df) == 8
    t1 = report.table1(df).set_index(["model", "weight decay"])
    row = t1.loc[("mlp_1x512", "no")]
    assert row["runs"] == 2 and row["test (ours)"] == "52.00 ± 2.83" and row["test diff"] == pytest.approx(52 - 50.51)
    assert t1.loc[("mlp_1x512", "yes"), "test (ours)"] == "51.00"
    rand = t1.loc[("mlp_1x512 (random labels)", "no")]
    assert rand["train (ours)"] == "98.00" and rand["fitted"] == "0/1"
    assert t1.loc[("alexnet", "no"), "runs"].tolist() == [0, 0]
    t4 = report.table4(df).set_index(["model", "regularizer"])
    assert t4.loc[("inception", "weight_decay"), "train (ours)"] == "100.00"
    assert t4.loc[("alexnet", "weight_decay"), "train (paper)"] == "fails to converge"


def test_fig1_relative_time_and_censoring(store):
    f1 = report.fig1_frame(report.load_runs(store, scale="cpu")).set_index(["model", "level"])
    assert f1.loc[("mlp_1x512", 0.0), "relative_time"] == 1.0
    assert f1.loc[("mlp_1x512", 0.5), "relative_time"] == 2.0  # seed 0 baseline: 100 steps
    assert f1.loc[("mlp_1x512", 1.0), "censored"] and f1.loc[("mlp_1x512", 1.0), "relative_time"] == 3.0
    assert math.isclose(f1.loc[("mlp_1x512", 0.5), "test_error"], 0.7)


def test_write_report_files(store, tmp_path):
    files = {p.name for p in report.write_report(store, tmp_path / "out", scale="cpu")}
    assert {"table1.md", "table1.csv", "table4.md", "fig1a.png", "fig1b.png", "fig1c.png", "README.md"} <= files
    assert "fig2b.png" not in files  # no inception true-label runs in this store
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "JPEG" in readme and "0.999" in readme and "never reached the target" in readme
    run_id = report.log_report(store, [tmp_path / "out" / "table1.md"], "test")
    import mlflow

    assert [a.path for a in mlflow.MlflowClient(store).list_artifacts(run_id)] == ["table1.md"]


@pytest.mark.slow
def test_real_preset_end_to_end_then_report(tmp_path, data_root):
    res = run_cli(["experiment=fig1bc", "hydra.sweeper.params.model=mlp_1x512", "sweep_levels=0.0,1.0",
                   "dataset.train_size=200", "dataset.test_size=100", "trainer.max_epochs=2",
                   f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    files = {p.name for p in report.write_report(uri, tmp_path / "report", scale="cpu")}
    assert {"fig1b.png", "fig1c.png", "table1.md"} <= files
    t1 = report.table1(report.load_runs(uri, scale="cpu")).set_index("model")
    assert t1.loc["mlp_1x512", "runs"].tolist() == [0, 1]  # (wd yes, wd no): the true-label run
    assert t1.loc["mlp_1x512 (random labels)", "runs"] == 1
