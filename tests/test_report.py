"""The report: known runs in a synthetic MLflow store -> known tables; strays never mix in or crash
it; censored runs are lower bounds; and one real preset end to end."""

import math
import shutil
from hashlib import sha256
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from rethink import plots, report
from rethink.report import deviations
from rethink.run import open_run, track

SMOKE = "dataset.train_size=200 trainer.max_epochs=2"


def record(*, model, level, seed=0, kind="labels", crop=False, wd=0.0, scale="cpu", budget="standard",
           dataset="cifar10", train_size=1000, legacy=False) -> tuple[dict, dict]:
    """(params, tags) of a training run as rethink.jobs.training records it: params in their natural types and
    tags scale/budget; `legacy`: as older runs did (numbers as floats, scale as param choice.scale, no budget)."""
    params = {"dataset.name": dataset, "model.name": model, "corruption.kind": kind, "corruption.level": level,
              "regularizer.random_crop": crop, "regularizer.flip": False, "regularizer.weight_decay": wd,
              "regularizer.dropout": 0.0, "seed": seed, "train_examples": train_size, "trainer.target_train_acc": 0.999,
              "task.name": "train"}
    identity = f"{model}-{kind}-{level}-{crop}-{wd}-{seed}-{scale}-{dataset}-{train_size}-{budget}-{legacy}"
    tags = {"config_hash": identity, "device": "cpu"}
    if legacy:
        params = {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in params.items()}
        params["choice.scale"] = scale
    else:
        tags |= {"scale": scale} | ({"budget": budget} if budget else {})
    return params, tags


# The training input's (source type, source) as rethink.data.source_of gives them (record.dataset_inputs logs them).
SOURCES = {"local": ("local", "/data/cifar10"),
           "torchvision": ("torchvision", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz -> /data")}


def log_run(uri, exp, *, train, test, fit_step=None, steps=None, losses=(2.0, 1.0, 0.5), name=None,
            final=True, tags=None, params=None, accs=None, source="local", **rec):
    """A FINISHED run with per-epoch metrics and (`final`) the summary metrics, plus `params` (the
    setup params a run records since they exist: trainer.*, model.init...); `accs`: its per-epoch train
    accuracy (default: rising linearly to `train`); `source`: its training input's source type (None: no
    dataset input, as older and imported runs); returns its run id."""
    base_params, base_tags = record(**rec)
    params = base_params | (params or {})
    steps = steps or 100 * len(losses)
    accs = accs or [train * i / len(losses) for i in range(1, len(losses) + 1)]
    base_tags["stop_reason"] = "target" if fit_step else "max_epochs"
    with open_run.start_run(uri, exp, name or base_tags["config_hash"], base_tags | (tags or {})) as run:
        run.log_params(params)
        if source:
            source_type, where = SOURCES[source]
            run.log_inputs([{"name": f"{params['dataset.name']}-train", "digest": sha256((base_tags["config_hash"] + source).encode()).hexdigest()[:16],
                             "source": where, "source_type": source_type, "context": "training"}])
        for i, (loss, acc) in enumerate(zip(losses, accs, strict=True), start=1):
            run.log_metrics({"train/loss": loss, "train/acc": acc, "test/acc": test, "epoch": i},
                            step=steps * i // len(losses))
        if final:
            run.log_metrics({"epochs": len(losses), "steps": steps} | ({"fit_step": fit_step} if fit_step else {}),
                            step=steps)
    return run.run_id


def standard_runs(uri, exp):
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.50, fit_step=100)
    log_run(uri, exp, model="mlp_1x512", level=0, train=1.0, test=0.54, fit_step=100, seed=1)  # "0": natural int
    log_run(uri, exp, model="mlp_1x512", level=0.5, train=1.0, test=0.30, fit_step=200)
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=0.98, test=0.10)  # never fitted: censored
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.51, wd=0.0005, fit_step=100)
    log_run(uri, exp, model="inception", level=1.0, train=1.0, test=0.1, wd=0.0005, fit_step=300, train_size=200)
    log_run(uri, exp, model="inception", level=1.0, kind="shuffled_pixels", train=1.0, test=0.1, fit_step=300, train_size=200)
    # An older-format record that carries the budget tag: floats "0.0", scale from param choice.scale.
    log_run(uri, exp, model="inception", level=1.0, kind="gaussian", train=1.0, test=0.1, fit_step=300, train_size=200,
            legacy=True, tags={"budget": "standard"})
    log_run(uri, exp, name="paper-run", model="mlp_1x512", level=0.0, train=1.0, test=0.99, scale="paper")  # other scale


@pytest.fixture(scope="module")
def standard_store(tmp_path_factory) -> Path:
    """The standard runs, logged once per module (a store takes ~10 s to fill); tests get a copy."""
    db = tmp_path_factory.mktemp("standard") / "mlflow.db"
    uri = f"sqlite:///{db}"
    standard_runs(uri, track.ensure_experiment(uri, "rethink"))
    return db


@pytest.fixture()
def store(tmp_path, standard_store):
    shutil.copy(standard_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def add_strays(uri) -> dict[str, str]:
    """Runs the paper tables must not use, next to the standard ones: {run name: expected reason}."""
    exp = track.ensure_experiment(uri, "rethink")
    # A smoke run (`python -m rethink dataset.train_size=200 trainer.max_epochs=2`) that stopped
    # before its summary metrics: same model/seed/p as a standard run, so it would average in.
    log_run(uri, exp, name="smoke", model="mlp_1x512", level=0, train=0.4, test=0.2, train_size=200, budget="custom",
            tags={"budget_overrides": SMOKE}, final=False)
    log_run(uri, exp, name="old", model="mlp_1x512", level=0.0, train=1.0, test=0.9, fit_step=50, budget=None)
    log_run(uri, exp, name="old-legacy", model="mlp_1x512", level=0.0, train=1.0, test=0.9, fit_step=50, legacy=True)
    log_run(uri, exp, name="mnist", model="mlp_1x512", level=0.0, train=1.0, test=0.98, fit_step=50, dataset="mnist")
    # The README command's kind of run: standard budget, but it stopped at the target, before convergence.
    log_run(uri, exp, name="early", model="mlp_1x512", level=0.0, train=1.0, test=0.47, fit_step=50,
            params={"trainer.stop_at_target": True})
    with open_run.start_run(uri, exp, "theory", {"config_hash": "theory", "task": "kernel"}) as run:  # no dataset params
        run.log_params({"task.name": "kernel", "task.data": "mnist", "task.train_size": 5000})
        run.log_metrics({"test/error": 0.012}, step=0)
    failed = track.create_run(uri, exp, "failed", {"config_hash": "failed", "scale": "cpu", "budget": "standard"})
    track.client(uri).log_param(failed, "model.name", "mlp_1x512")
    track.log_metrics(uri, failed, {"train/acc": 0.3}, step=1)
    track.end_run(uri, failed, "FAILED")
    sweep = track.create_run(uri, exp, "sweep-parent", {"kind": "sweep"})
    track.end_run(uri, sweep, "FINISHED")
    return {"smoke": f"custom budget: {SMOKE}", "old": "untagged", "old-legacy": "untagged", "mnist": "dataset mnist",
            "early": "stopped at the target (trainer.stop_at_target=true)",
            "theory": "not a training run (task=kernel)", "failed": "status FAILED"}


def test_tables_from_known_runs(store):
    df = report.load_runs(store, scale="cpu")
    assert len(df) == 8
    assert set(df["seed"]) == {0, 1} and set(df["level"]) == {0.0, 0.5, 1.0}  # "0", "0.0" and 0 alike
    t1 = report.table1(df).set_index(["model", "weight decay"])
    row = t1.loc[("mlp_1x512", "no")]
    assert row["runs"] == 2 and row["test (ours)"] == "52.00 ± 2.83" and row["test diff"] == pytest.approx(52 - 50.51)
    assert row["fitted"] == "2/2"
    assert t1.loc[("mlp_1x512", "yes"), "test (ours)"] == "51.00"
    rand = t1.loc[("mlp_1x512 (random labels)", "no")]
    assert rand["train (ours)"] == "98.00" and rand["fitted"] == "0/1 (not all reached the target)"
    assert t1.loc[("alexnet", "no"), "runs"].tolist() == [0, 0]
    t4 = report.table4(df).set_index(["model", "regularizer"])
    assert t4.loc[("inception", "weight_decay"), "train (ours)"] == "100.00"
    assert t4.loc[("alexnet", "weight_decay"), "train (paper)"] == "fails to converge"


def test_table4_augment_is_flip_and_rotation_with_the_online_accuracy(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    aug = log_run(uri, exp, model="inception", level=1.0, train=0.95, test=0.1, train_size=500,
                  params={"regularizer.flip": True, "regularizer.rotate": 25})
    track.log_metrics(uri, aug, {"train/running_acc": 0.62}, step=300)
    # The old `augment` (random crop + flip, no rotation) is not the paper's: it fills no Table 4 row.
    log_run(uri, exp, model="inception", level=1.0, train=1.0, test=0.1, fit_step=200, crop=True, train_size=500,
            params={"regularizer.flip": True})
    crop = log_run(uri, exp, model="inception", level=1.0, train=1.0, test=0.1, fit_step=250, crop=True, train_size=500)
    track.log_metrics(uri, crop, {"train/running_acc": 0.9}, step=300)
    t4 = report.table4(report.load_runs(uri, scale="cpu")).set_index(["model", "regularizer"])
    row = t4.loc[("inception", "augment")]
    assert row["runs"] == 1 and row["train (ours)"] == "95.00" and row["train, online (ours)"] == "62.00"
    assert row["fitted"] == "0/1 (not all reached the target)"
    crop_row = t4.loc[("inception", "random_crop")]
    assert crop_row["runs"] == 1 and crop_row["train, online (ours)"] == "90.00" and crop_row["fitted"] == "1/1"
    assert t4.loc[("inception", "weight_decay"), "train, online (ours)"] == ""  # not an augmented row
    report.write_report(uri, tmp_path / "out", scale="cpu")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "random rotation up to 25 degrees" in readme
    assert "The paper does not say how it measured these training accuracies" in readme  # only ours is online


def test_fig1_relative_time_and_censoring(store):
    f1 = report.fig1_frame(report.load_runs(store, scale="cpu")).set_index(["model", "level"])
    assert f1.loc[("mlp_1x512", 0.0), "relative_time"] == 1.0
    assert f1.loc[("mlp_1x512", 0.5), "relative_time"] == 2.0  # seed 0 baseline: 100 steps
    p1 = f1.loc[("mlp_1x512", 1.0)]
    assert p1["censored"] and p1["relative_time"] == 3.0 and p1["time to overfit / p=0"] == ">= 3.00"
    assert math.isclose(f1.loc[("mlp_1x512", 0.5), "test_error"], 0.7)


def test_strays_change_nothing_and_are_listed(store, tmp_path):
    clean = report.load_runs(store, scale="cpu")
    expected = {"t1": report.table1(clean), "t4": report.table4(clean), "f1": report.fig1_frame(clean)}
    reasons = add_strays(store) | {"paper-run": "other scale: paper"}
    df = report.load_runs(store, scale="cpu")
    pd.testing.assert_frame_equal(report.table1(df), expected["t1"])
    pd.testing.assert_frame_equal(report.table4(df), expected["t4"])
    pd.testing.assert_frame_equal(report.fig1_frame(df), expected["f1"])
    _, unused = report.split_runs(report.read_runs(store), "cpu")
    got = dict(zip(unused["run"], unused["reason"], strict=True))
    assert set(got) == set(reasons)  # the sweep parent is bookkeeping, in neither frame
    for name, why in reasons.items():
        assert got[name].startswith(why), (name, got[name])
    report.write_report(store, tmp_path / "out", scale="cpu")
    section = (tmp_path / "out" / "README.md").read_text().split("## Runs not used")[1]
    assert all(name in section for name in reasons) and SMOKE in section and "1 sweep parent" in section


def test_only_strays_still_writes_the_readme(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    reasons = add_strays(uri)
    files = {p.name for p in report.write_report(uri, tmp_path / "out", scale="cpu")}
    assert not any(f.endswith((".png", ".pdf")) for f in files)  # no data, no figure
    assert report.table1(report.load_runs(uri, scale="cpu"))["runs"].sum() == 0
    readme = (tmp_path / "out" / "README.md").read_text()
    assert readme.startswith("# rethink report — scale: cpu\n\n0 runs used") and all(n in readme for n in reasons)
    with pytest.raises(SystemExit, match="no runs"):
        report.write_report(f"sqlite:///{tmp_path}/empty.db", tmp_path / "none", scale="cpu")


def test_several_scales_need_a_choice(store, tmp_path):
    with pytest.raises(SystemExit, match="--scale"):
        report.write_report(store, tmp_path / "out")


def test_any_budget_admits_custom_and_untagged_runs(store):
    add_strays(store)
    df, unused = report.split_runs(report.read_runs(store), "cpu", budgets=None)
    assert {"old", "old-legacy", "early"} <= set(df["run"]) and not {"smoke", "mnist", "theory", "failed"} & set(df["run"])
    assert unused.set_index("run").loc["smoke", "reason"] == "missing metrics: steps"  # its summary never came


@pytest.fixture()
def censored_store(tmp_path):
    """AlexNet's p = 0 run never fitted; MLP's p = 1 run never fitted (stopped at step 379)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    log_run(uri, exp, model="alexnet", level=0.0, train=0.95, test=0.3, steps=300, train_size=500)
    log_run(uri, exp, model="alexnet", level=1.0, train=1.0, test=0.1, fit_step=600, steps=600, train_size=500)
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.45, fit_step=100, train_size=20000)
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=0.9, test=0.1, steps=379, train_size=20000)
    return uri


def test_censored_runs_are_lower_bounds_or_no_ratio(censored_store, tmp_path):
    df = report.load_runs(censored_store, scale="cpu")
    f1 = report.fig1_frame(df).set_index(["model", "level"])
    for level in (0.0, 1.0):
        a = f1.loc[("alexnet", level)]
        assert math.isnan(a["relative_time"]) and a["p0_censored"] and a["time to overfit / p=0"] == "p=0 censored"
    m1 = f1.loc[("mlp_1x512", 1.0)]
    assert m1["relative_time"] == pytest.approx(3.79) and m1["censored"] and m1["time to overfit / p=0"] == ">= 3.79"
    assert f1.loc[("mlp_1x512", 0.0), "time to overfit / p=0"] == "1.00" and not f1.loc[("mlp_1x512", 0.0), "censored"]
    t1 = report.table1(df).set_index(["model", "random crop", "weight decay"])
    assert t1.loc[("alexnet", "no", "no"), "fitted"] == "0/1 (not all reached the target)"
    assert t1.loc[("alexnet (random labels)", "no", "no"), "fitted"] == "1/1"
    md = report.markdown(report.fig1_table(report.fig1_frame(df)))
    assert ">= 3.79" in md and "p=0 censored" in md and "nan" not in md

    fig = report.fig1b(report.fig1_frame(df), df)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend, below the panel
    assert ">= lower bound: the run(s) ended before reaching the target" in labels and not any("paper" in s for s in labels)
    assert "alexnet" not in " ".join(labels) and "not drawn: alexnet" in fig.axes[0].get_title()
    assert "scale=cpu" in fig._suptitle.get_text() and "mlp_1x512 (20,000 images)" in labels  # sizes differ
    assert len(fig.axes) == 1  # no threshold below 99.9 % that AlexNet's p = 0 run (95 %) reached: the target's panel only
    plots.close(fig)
    files = {p.name for p in report.write_report(censored_store, tmp_path / "out", scale="cpu")}
    assert {"fig1b.png", "fig1b.pdf", "fig1c.png", "fig1c.pdf"} <= files
    assert "fig1a.png" not in files and "fig2b.png" not in files  # no Inception runs: no empty figures


def test_write_report_files(store, tmp_path):
    files = {p.name for p in report.write_report(store, tmp_path / "out", scale="cpu")}
    assert {"table1.md", "table1.csv", "table4.md", "fig1a.png", "fig1a.pdf", "fig1b.png", "fig1c.png", "README.md"} <= files
    assert "fig2b.png" not in files  # no inception true-label runs in this store
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "JPEG" in readme and "0.999" in readme and "never reached the target" in readme
    assert "![fig1c](fig1c.png)" in readme and "[PDF](fig1c.pdf)" in readme and "nan" not in readme
    assert "| model " in (tmp_path / "out" / "table1.md").read_text()  # DataFrame.to_markdown's pipe table
    run_id = report.log_report(store, [tmp_path / "out" / "table1.md"], "test")

    assert [a.path for a in track.client(store).list_artifacts(run_id)] == ["table1.md"]


def test_figures_titles_panels_chance(store):
    df = report.load_runs(store, scale="cpu")
    f1 = report.fig1_frame(df)
    fig = report.fig1c(f1, df)
    ax = fig.axes[0]
    assert ax.get_title() == "Fig. 1c: test error vs label noise — scale=cpu, 1,000 training images"
    labels = ax.get_legend_handles_labels()[1]
    assert "chance (10 classes)" in labels and labels.count("mlp_1x512") == 1 and "inception" not in labels
    plots.close(fig)
    fig = report.fig1a(df, store)
    assert "200 training images" in fig.axes[0].get_title() and fig.axes[0].get_xlabel() == "SGD steps"
    assert any(s.startswith("chance") for s in fig.axes[0].get_legend_handles_labels()[1])
    plots.close(fig)
    exp = track.ensure_experiment(store, "rethink")
    log_run(store, exp, model="inception", level=0.0, train=1.0, test=0.6, fit_step=30000, steps=30000, train_size=200)
    fig = report.fig2b(report.load_runs(store, scale="cpu"), store)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "thousands of SGD steps"  # one model: one panel
    assert "chance (10 classes)" in fig.axes[0].get_legend_handles_labels()[1]
    plots.close(fig)


def test_learning_curve_titles_and_chance():
    history = [{"step": s, "train/loss": 2.0 / s, "train/acc": 0.1 * s, "test/acc": 0.1} for s in range(1, 6)]
    fig = plots.learning_curve(history, "mlp-labels0", scale="cpu", train_size=20000, num_classes=10)
    assert fig._suptitle.get_text() == "mlp-labels0 — scale=cpu, 20,000 training images"
    ax_loss, ax_acc = fig.axes
    assert "chance (10 classes)" in ax_acc.get_legend_handles_labels()[1] and ax_acc.get_xlabel() == "SGD steps"
    plots.close(fig)
    fig = plots.learning_curve(history, "plain")  # as job.py calls it today; test/loss missing
    assert fig._suptitle.get_text() == "plain"
    plots.close(fig)
    assert plots.step_axis(4999) == (1.0, "SGD steps") and plots.step_axis(5000)[1] == "thousands of SGD steps"


# The setup params job.py records today (record.params: natural types); older runs lack them.
SETUP = {"trainer.max_epochs": 60, "trainer.stop_at_target": False, "trainer.patience": None, "trainer.amp": "auto",
         "trainer.lr_decay": 0.95, "trainer.lr_decay_period": 391, "regularizer.weight_decay_on": "weights",
         "test_examples": 10000, "model.init": "glorot"}


def test_deviations_are_read_from_the_runs_used(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    cpu, gpu = {"device": "cpu (2 threads)"}, {"device": "cuda:0 NVIDIA H200"}
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.5, fit_step=100, tags=cpu, params=SETUP)
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=1.0, test=0.1, fit_step=300, tags=cpu,
            params=SETUP | {"model.init": "torch"})
    log_run(uri, exp, model="inception", level=0.0, wd=0.004, train=1.0, test=0.6, fit_step=200, train_size=50000,
            tags=gpu, params=SETUP | {"model.net.conv_module": "tf_slim", "trainer.lr_decay_period": None,
                                      "trainer.max_epochs": 200, "model.net.bn_momentum": 0.001,
                                      "model.net.bn_eps": 0.001})
    # An older run: none of the setup params, numbers as floats.
    log_run(uri, exp, model="inception", level=1.0, train=1.0, test=0.1, fit_step=300, train_size=200, legacy=True,
            tags={"budget": "standard"})
    # Not used (a custom budget): its values must not be counted.
    log_run(uri, exp, model="mlp_1x512", level=0.5, train=1.0, test=0.3, fit_step=200, budget="custom",
            params=SETUP | {"model.init": "lecun", "trainer.patience": 5})
    report.write_report(uri, tmp_path / "out", scale="cpu")
    section = (tmp_path / "out" / "README.md").read_text().split("## Deviations from the paper")[1].split("\n## ")[0]
    items = {line.split("**")[1]: line for line in section.splitlines() if line.startswith("- **")}
    assert "How the 4 runs used" in section and "lecun" not in section and "patience=5" not in section
    assert "JPEG (quality 75, 4:2:0 chroma subsampling) (4 runs)" in items["Data"] and "a little lower" in items["Data"]
    assert ("mlp_1x512: 1,000 training images, 10,000 test images, at most 60 epochs (2 runs)"
            in items["Training budget"])
    assert "inception: 200 training images, test images not recorded, epoch cap not recorded (1 run)" in items["Training budget"]
    assert "target_train_acc=0.999, stop_at_target=False, patience=None (3 runs)" in items["Stopping rule"]
    assert ("glorot (2 runs), PyTorch default (no model.init param) (1 run), torch (1 run)"
            in items["Initialization"])
    conv = items["Inception's conv module"]
    assert "inception: tf_slim (conv (no bias)" in conv and "inception: not recorded: conv + bias" in conv
    assert deviations.conv_module(pd.DataFrame({"model": ["inception_nobn"], "conv_module": [None]})).iloc[0] == (
        "inception_nobn: no BatchNorm: conv + bias -> ReLU (the paper's Inception w/o BatchNorm)")
    assert "mlp" not in conv
    bn = items["Inception's BatchNorm"]
    assert "momentum 0.001, eps 0.001 (1 run)" in bn and "not recorded: momentum 0.1, eps 1e-05 (PyTorch's defaults" in bn
    assert "TF-slim's batch_norm defaults are decay 0.999" in bn and "mlp" not in bn
    assert "0.004 on weights (conv/linear kernels only) (1 run)" in items["Weight decay"]
    prec = items["Device and precision"]
    assert "cpu (2 threads), fp32 (2 runs)" in prec and "cuda:0 NVIDIA H200, bf16 autocast (1 run)" in prec
    assert "cpu, precision not recorded (1 run)" in prec
    lr = items["LR schedule"]
    assert "x0.95 every 391 steps (2 runs)" in lr and "x0.95 per epoch (as the paper) (1 run)" in lr
    assert "not recorded (1 run)" in lr and "Paper: x0.95 per epoch" in lr
    assert "No run used" in report.deviations_section(report.load_runs(uri, scale="paper"))


def test_wd_sweep_table_and_figure(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    log_run(uri, exp, model="alexnet", level=1.0, wd=0.0005, train=1.0, test=0.1, fit_step=600, train_size=500)
    for seed, train in ((0, 0.3), (1, 0.35)):  # never fitted: both stopped at the epoch cap
        log_run(uri, exp, model="alexnet", level=1.0, wd=0.004, seed=seed, train=train, test=0.1, train_size=500)
    log_run(uri, exp, model="mlp_1x512", level=1.0, wd=0.0005, train=1.0, test=0.1, fit_step=900)
    log_run(uri, exp, model="mlp_1x512", level=1.0, wd=0.002, train=0.9, test=0.1)
    log_run(uri, exp, model="mlp_1x512", level=0.0, wd=0.002, train=1.0, test=0.5, fit_step=100)  # true labels: not swept
    df = report.load_runs(uri, scale="cpu")
    frame = report.sweep_frame(df)
    ws = frame.set_index(["model", "weight_decay"])
    assert len(ws) == 4 and ws.loc[("alexnet", 0.0005), "fit"] == 1
    a = ws.loc[("alexnet", 0.004)]
    assert a["runs"] == 2 and a["fit"] == 0 and a["train_acc"] == pytest.approx(0.325) and a["stop_reason"] == "max_epochs x2"
    # The paper's rows take the presets' coefficient (5e-4) only: the sweep's other points never average in.
    t4 = report.table4(df).set_index(["model", "regularizer"])
    assert t4.loc[("alexnet", "weight_decay"), "runs"] == 1 and t4.loc[("alexnet", "weight_decay"), "train (ours)"] == "100.00"
    assert report.table1(df).set_index(["model", "weight decay"]).loc[("mlp_1x512", "yes"), "runs"] == 0

    fig = report.sweep_figure(frame, df)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert ax.get_xscale() == "log" and "filled: reached the target" in labels
    assert "alexnet (500 images)" in labels and "mlp_1x512 (1,000 images)" in labels  # their sizes differ
    assert "open: not all runs reached the target" in labels and "chance (10 classes)" in labels
    assert "scale=cpu" in ax.get_title()
    plots.close(fig)
    files = {p.name for p in report.write_report(uri, tmp_path / "out", scale="cpu")}
    assert {"wd_sweep.png", "wd_sweep.pdf", "wd_sweep.md", "wd_sweep.csv"} <= files
    md = (tmp_path / "out" / "wd_sweep.md").read_text()
    assert "fails to converge" in md and "| alexnet " in md and "32.50 ± 3.54" in md and "| no " in md
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Weight decay sweep (an extension)" in readme and "![wd_sweep](wd_sweep.png)" in readme
    # One coefficient per model is Table 4's row, not a sweep: no table, no figure.
    one = df[(df["weight_decay"] - 0.0005).abs() < 1e-12]
    assert report.sweep_frame(one).empty and report.sweep_figure(report.sweep_frame(one), one) is None


@pytest.mark.slow
def test_real_preset_end_to_end_then_report(tmp_path, data_root):
    res = run_cli(["experiment=fig1bc", "hydra.sweeper.params.model=mlp_1x512", "sweep_levels=0.0,1.0",
                   "dataset.train_size=200", "dataset.test_size=100", "trainer.max_epochs=2",
                   f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    # A shrunk budget is not the paper's protocol: the default report uses none of these runs, and says why.
    files = {p.name for p in report.write_report(uri, tmp_path / "report", scale="cpu")}
    assert not any(f.startswith("fig1") and f.endswith(".png") for f in files)
    runs = report.read_runs(uri)
    _, unused = report.split_runs(runs, "cpu")
    jobs = runs[runs["run_kind"] != "sweep"]
    assert len(jobs) >= 2 and set(unused["run id"]) == set(jobs["run_id"])
    assert unused["reason"].str.match("custom budget|untagged").all()  # untagged: a job.py that predates the tag
    # --budget any builds the same pipeline from them (a smoke check of the report).
    files = {p.name for p in report.write_report(uri, tmp_path / "any", scale="cpu", budgets=None)}
    assert {"fig1c.png", "fig1c.pdf", "table1.md"} <= files
    df = report.load_runs(uri, scale="cpu", budgets=None)
    f1 = report.fig1_frame(df)  # 2 epochs: the p = 0 run may not fit, and then there is no ratio to draw
    assert ("fig1b.png" in files) == f1["relative_time"].notna().any()
    assert f1["p0_censored"].any() == (df.loc[df["level"] == 0, "fit_step"].isna().all())
    t1 = report.table1(df).set_index("model")
    assert t1.loc["mlp_1x512", "runs"].tolist() == [0, 1]  # (wd yes, wd no): the true-label run
    assert t1.loc["mlp_1x512 (random labels)", "runs"] == 1


@pytest.fixture()
def paper_like_store(tmp_path):
    """Fig. 1 runs as at the paper's scale: every run reaches 98 %, but MLP's p = 0.5 and p = 1 never reach
    the 99.9 % target (censored) and its p = 1 not even 99 %. Only MLP's p = 0 logs the steps_to_99 summary:
    the 98 % steps come from the train/acc histories."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    kw = {"scale": "paper", "train_size": 50000, "test": 0.5}
    p0 = log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, accs=[0.5, 0.995, 1.0], fit_step=300, **kw)
    track.log_metrics(uri, p0, {"steps_to_99": 200, "steps_to_99_9": 300}, step=300)
    log_run(uri, exp, model="mlp_1x512", level=0.5, train=0.992, accs=[0.4, 0.9, 0.992], **kw)
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=0.985, accs=[0.3, 0.85, 0.985], steps=600, **kw)
    log_run(uri, exp, model="alexnet", level=0.0, train=1.0, accs=[0.6, 0.99, 1.0], fit_step=300, **kw)
    log_run(uri, exp, model="alexnet", level=1.0, train=1.0, accs=[0.5, 0.98, 1.0], fit_step=600, steps=600, **kw)
    return uri


def test_fig1b_time_to_a_threshold_every_run_reached_beside_the_censored_target(paper_like_store, tmp_path):
    uri = paper_like_store
    df = report.load_runs(uri, scale="paper")
    f1 = report.fig1_frame(df, uri).set_index(["model", "level"])
    assert (f1["threshold"] == 0.98).all()  # 99 %: MLP's p = 1 run never reached it
    mlp = f1.loc["mlp_1x512"]
    # to 98 %: MLP p = 0 at step 200, p = 0.5 at 300, p = 1 at 600 (AlexNet: 200, 400) -- every point is data
    assert mlp["relative_time_at_threshold"].tolist() == [1.0, 1.5, 3.0]
    assert mlp["time to threshold / p=0"].tolist() == ["1.00", "1.50", "3.00"]
    # to the 99.9 % target: p = 0.5 and p = 1 are censored, so their ratios are lower bounds
    assert mlp["censored"].tolist() == [False, True, True]
    assert mlp["time to overfit / p=0"].tolist() == ["1.00", ">= 1.00", ">= 2.00"]
    assert f1.loc[("alexnet", 1.0), "relative_time_at_threshold"] == 2.0 and not f1.loc[("alexnet", 1.0), "censored"]
    # Without the store only the summaries are known: no threshold is known to have been reached by every run.
    assert report.fig1_frame(df)["threshold"].isna().all()

    table = report.fig1_table(report.fig1_frame(df, uri))
    both = ["time to 99.9 % / p=0 (>=: a lower bound)", "time to 98 % / p=0 (every run reached it)"]
    assert both == list(table.columns[-2:])
    assert table.loc[table["p"] == 1.0, both].values.tolist() == [["2.00", "2.00"], [">= 2.00", "3.00"]]  # alexnet, mlp

    fig = report.fig1b(report.fig1_frame(df, uri), df)
    common, target = fig.axes
    assert "98 %" in common.get_title() and "every run" in common.get_title() and "99.9 %" in target.get_title()
    mlp_line = next(ln for ln in target.get_lines() if ln.get_label() == "mlp_1x512")
    assert mlp_line.get_ydata()[0] == 1.0 and all(math.isnan(y) for y in mlp_line.get_ydata()[1:])  # no line to a bound
    open_marks = [ln for ln in target.get_lines() if ln.get_marker() == "^" and len(ln.get_xdata())]
    assert [list(ln.get_xdata()) for ln in open_marks] == [[0.5, 1.0]] and open_marks[0].get_markerfacecolor() == "white"
    common_line = next(ln for ln in common.get_lines() if ln.get_label() == "mlp_1x512")
    assert list(common_line.get_ydata()) == [1.0, 1.5, 3.0]
    plots.close(fig)

    report.write_report(uri, tmp_path / "out", scale="paper")
    csv = pd.read_csv(tmp_path / "out" / "fig1bc.csv")
    assert {"censored", "threshold", "relative_time_at_threshold"} <= set(csv.columns)
    assert csv.loc[csv["model"] == "mlp_1x512", "censored"].tolist() == [False, True, True]
    md = (tmp_path / "out" / "fig1bc.md").read_text()
    assert ">= 2.00" in md and "time to 98 % / p=0 (every run reached it)" in md
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "also give the time to **98 %**, the highest of 99 %, 98 %" in readme


def test_fig2b_legend_below_the_panels_and_no_gain_for_a_run_that_never_fitted(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    log_run(uri, exp, model="inception", level=0.0, train=1.0, test=0.6, fit_step=300, train_size=500,
            accs=[0.5, 0.9, 1.0])
    # Never fitted: a flat curve near chance (Inception w/o BN on a CPU budget).
    log_run(uri, exp, model="inception_nobn", level=0.0, train=0.11, test=0.1, train_size=500, accs=[0.1, 0.12, 0.11])
    fig = report.fig2b(report.load_runs(uri, scale="cpu"), uri)
    fitted, flat = fig.axes
    assert len(fitted.collections) == 1 and "early-stopping gain 0.00 pts" in fitted.get_title()  # the shaded band
    assert not flat.collections and "never fitted (best train accuracy 12.0 %): no gain drawn" in flat.get_title()
    assert fitted.get_legend() is None and flat.get_legend() is None and len(fig.legends) == 1
    fig.canvas.draw()  # the one legend sits below both panels: it covers no curve
    legend_top = fig.legends[0].get_window_extent().y1
    assert all(legend_top <= ax.get_window_extent().y0 for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("train accuracy") == 1 and "chance (10 classes)" in labels and any("shaded" in s for s in labels)
    plots.close(fig)


def test_the_data_copy_is_read_from_each_runs_dataset_input(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    log_run(uri, exp, model="mlp_1x512", level=0.0, train=1.0, test=0.5, fit_step=100)  # the local JPEG tree
    log_run(uri, exp, model="mlp_1x512", level=1.0, train=1.0, test=0.1, fit_step=300, source="torchvision")
    log_run(uri, exp, model="mlp_1x512", level=0.5, train=1.0, test=0.3, fit_step=200, source=None)  # no input logged
    df = report.load_runs(uri, scale="cpu").set_index("level")
    assert df.loc[1.0, "source_type"] == "torchvision" and df.loc[0.0, "source"] == "/data/cifar10"
    assert pd.isna(df.loc[0.5, "source_type"])
    data = deviations.data(df.sort_index().reset_index())  # p = 0, 0.5, 1
    assert data.tolist() == [deviations.JPEG, deviations.SOURCE_NOT_RECORDED, deviations.TORCHVISION]
    torchvision_only = report.deviations_section(df.loc[[1.0]].reset_index())
    assert "torchvision's download of the original (1 run)" in torchvision_only and "JPEG" not in torchvision_only
    section = report.deviations_section(df.reset_index())
    assert "re-encoded as JPEG" in section and "a little lower" in section  # said where a run used the JPEG copy


def test_the_headline_sentences_are_computed_from_the_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    lr = {"trainer.lr_decay": 0.95, "trainer.lr_decay_period": 391}
    for level, test, fit in ((0.0, 0.45, 100), (0.5, 0.30, 200), (1.0, 0.10, 300)):
        log_run(uri, exp, model="mlp_1x512", level=level, train=1.0, test=test, fit_step=fit, steps=4740, params=lr)
    log_run(uri, exp, model="alexnet", level=0.0, train=1.0, test=0.40, fit_step=300, steps=480, train_size=1000, params=lr)
    log_run(uri, exp, model="alexnet", level=1.0, train=1.0, test=0.12, fit_step=400, steps=480, train_size=1000, params=lr)
    log_run(uri, exp, model="alexnet", level=0.5, train=1.0, test=0.45, fit_step=400, steps=480, train_size=1000, params=lr)
    log_run(uri, exp, model="inception_nobn", level=1.0, train=0.206, test=0.1, steps=200, train_size=500, params=lr)
    report.write_report(uri, tmp_path / "out", scale="cpu")
    readme = (tmp_path / "out" / "README.md").read_text()
    shows = readme.split("## What these runs show")[1].split("\n## ")[0]
    assert ("fitted (every run reached the target) by alexnet, mlp_1x512; not by inception_nobn "
            "(final train accuracy 20.6 %)") in shows
    assert "alexnet 12.0 %, inception_nobn 10.0 %, mlp_1x512 10.0 % (chance: 10 %)" in shows
    assert "rises with p** (Fig. 1c) for mlp_1x512; not for alexnet" in shows  # AlexNet: error 0.60 at p = 0, 0.55 at 0.5
    differ = readme.split("## Where our numbers differ from the paper")[1].split("\n## ")[0]
    assert "fitting random labels" not in differ and "[What these runs show](#what-these-runs-show)" in differ
    # x0.95 per 391 steps: AlexNet's 480 steps end at 95 % of the initial LR, Inception w/o BN's 200 at 100 %
    assert "alexnet 95 % (480 steps); inception_nobn 100 % (200 steps); mlp_1x512 54 % (4,740 steps)" in differ
    assert "alexnet, inception_nobn trained at a nearly constant LR" in differ
