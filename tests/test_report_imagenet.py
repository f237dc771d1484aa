"""The report's ImageNet half (Table 2, Fig. 2a): known Inception v3 runs in a real MLflow store -> known
cells beside the paper's, a figure of their curves; the CIFAR-10 tables never see them, and a store
without ImageNet runs gets no Table 2."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param

from rethink import plots, report
from rethink.report import imagenet, runs
from rethink.run import track
from rethink.run.identity import natural

STEPS_PER_EPOCH = 1000
# Per run: (train top-1, train top-5, test top-1, test top-5) at the end of each epoch, as fractions.
AUG_DROPOUT_WD = [(0.60, 0.80, 0.50, 0.75), (0.80, 0.95, 0.70, 0.90), (0.90, 0.99, 0.78, 0.94)]
NONE_SEED0 = [(0.70, 0.90, 0.55, 0.80), (0.90, 0.99, 0.64, 0.86), (0.99, 1.00, 0.60, 0.82)]
NONE_SEED1 = [(0.72, 0.91, 0.52, 0.78), (0.92, 0.99, 0.66, 0.88), (0.97, 1.00, 0.62, 0.84)]
RANDOM_WD = [(0.30, 0.50, 0.0010, 0.005), (0.60, 0.80, 0.0012, 0.006), (0.85, 0.95, 0.0010, 0.004)]


def write_run(uri, exp, name, tags, params, history, summary, last_step):
    """A FINISHED run written synchronously in one batch (open_run.start_run's async writer waits ~1 s per run):
    params as job.py logs them (`natural`), `history` as [(step, {key: value})], `summary` at `last_step`."""
    c = track.client(uri)
    run_id = c.create_run(exp, run_name=name, tags=tags).info.run_id
    metrics = [Metric(k, float(v), 0, step) for step, values in history for k, v in values.items()]
    metrics += [Metric(k, float(v), 0, last_step) for k, v in summary.items()]
    c.log_batch(run_id, metrics=metrics, params=[Param(k, natural(v)) for k, v in params.items()])
    c.set_terminated(run_id, "FINISHED")
    return run_id


def log_imagenet(uri, exp, name, curve, *, aug=False, dropout=False, wd=False, random=False, seed=0,
                 model="inception_v3", budget="standard", row="t2", best_top5=True):
    """A FINISHED run as the ImageNet presets record it: the params/tags of the brief, per-epoch metrics at
    the training step, and the summary metrics (best_test_acc, and with `best_top5` best_test_top5)."""
    params = {"dataset.name": "imagenet", "model.name": model, "corruption.kind": "labels",
              "corruption.level": 1.0 if random else 0.0, "regularizer.random_crop": aug, "regularizer.flip": aug,
              "regularizer.weight_decay": 4e-05 if wd else 0.0, "regularizer.dropout": 0.2 if dropout else 0.0,
              "regularizer.rotate": 0, "seed": seed, "train_examples": 1_281_167, "test_examples": 50_000,
              "trainer.max_epochs": len(curve), "trainer.optimizer": "rmsprop_tf", "trainer.lr_decay": 0.16,
              "trainer.lr_decay_epochs": 30, "trainer.lr_decay_period": None, "dataset.train_eval_size": 10_000,
              "trainer.amp": "auto", "task.name": "train"}
    tags = {"config_hash": name, "device": "cuda:0 NVIDIA H200", "scale": "cpu", "budget": budget, "paper": "table2",
            "row": row, "stop_reason": "max_epochs"}
    history = [(STEPS_PER_EPOCH * epoch, {"train/acc": tr, "train/top5": tr5, "test/acc": te, "test/top5": te5,
                                          "train/running_acc": tr - 0.05, "train/loss": 1 / epoch,
                                          "test/loss": 2 / epoch, "lr": 0.045, "epoch": epoch})
               for epoch, (tr, tr5, te, te5) in enumerate(curve, start=1)]
    summary = {"best_test_acc": max(c[2] for c in curve), "epochs": len(curve), "steps": STEPS_PER_EPOCH * len(curve)}
    if best_top5:
        summary["best_test_top5"] = max(c[3] for c in curve)
    return write_run(uri, exp, name, tags, params, history, summary, STEPS_PER_EPOCH * len(curve))


def log_cifar(uri, exp):
    """One CIFAR-10 run of Table 1 (mlp_1x512, true labels, no regularizer): train 100 %, test 50 %."""
    params = {"dataset.name": "cifar10", "model.name": "mlp_1x512", "corruption.kind": "labels", "corruption.level": 0.0,
              "regularizer.random_crop": False, "regularizer.flip": False, "regularizer.weight_decay": 0.0,
              "regularizer.dropout": 0.0, "seed": 0, "train_examples": 1000, "trainer.target_train_acc": 0.999,
              "task.name": "train"}
    tags = {"config_hash": "cifar", "device": "cpu", "scale": "cpu", "budget": "standard", "stop_reason": "target"}
    history = [(100 * i, {"train/acc": 0.5 * i, "test/acc": 0.5, "train/loss": 1 / i}) for i in (1, 2)]
    write_run(uri, exp, "cifar-mlp", tags, params, history, {"epochs": 2, "steps": 200, "fit_step": 200}, 200)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    """(a store with the CIFAR run only, a copy of it plus the ImageNet runs), filled once per module."""
    root = tmp_path_factory.mktemp("imagenet")
    cifar, both = root / "cifar.db", root / "both.db"
    uri = f"sqlite:///{cifar}"
    log_cifar(uri, track.ensure_experiment(uri, "rethink"))
    shutil.copy(cifar, both)
    uri = f"sqlite:///{both}"
    exp = track.ensure_experiment(uri, "rethink")
    log_imagenet(uri, exp, "aug-dropout-wd", AUG_DROPOUT_WD, aug=True, dropout=True, wd=True, row="t2_inception_v3_aug_dropout_wd")
    log_imagenet(uri, exp, "none-s0", NONE_SEED0, row="t2_inception_v3_none")
    log_imagenet(uri, exp, "none-s1", NONE_SEED1, seed=1, row="t2_inception_v3_none")
    # Without the best_test_top5 summary: the report takes the best from its test/top5 history.
    log_imagenet(uri, exp, "random-wd", RANDOM_WD, wd=True, random=True, row="t2_inception_v3_wd_random", best_top5=False)
    # Not used: a shrunk budget (it would average into the `none` row), and another model on ImageNet.
    log_imagenet(uri, exp, "smoke", [(0.1, 0.2, 0.1, 0.2)], budget="custom", row="t2_inception_v3_none")
    log_imagenet(uri, exp, "resnet", NONE_SEED0, model="resnet18")
    return cifar, both


def md_rows(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown pipe table in `text`, as {column: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def test_table2_and_fig2a_from_known_runs(stores, tmp_path):
    uri = f"sqlite:///{stores[1]}"
    _, unused = report.split_runs(report.read_runs(uri), "cpu")
    reasons = dict(zip(unused["run"], unused["reason"], strict=True))
    assert set(reasons) == {"smoke", "resnet"}  # every other ImageNet run reaches the ImageNet section
    assert reasons["smoke"].startswith("custom budget") and reasons["resnet"].startswith("model resnet18 on ImageNet")

    files = {p.name for p in report.write_report(uri, tmp_path / "out", scale="cpu")}
    assert {"table2.md", "table2.csv", "fig2a.png", "fig2a.pdf", "table1.md"} <= files
    rows = md_rows((tmp_path / "out" / "table2.md").read_text())
    assert [(r["labels"], r["aug"], r["dropout"], r["weight decay"]) for r in rows] == [
        (("random" if t[3] else "true"), *("yes" if f else "no" for f in t[:3])) for t in report.PAPER_TABLE2]
    full, aug_only, wd_only, none, rand_dw, rand_wd, rand = rows
    # aug + dropout + wd, one run: the last epoch's values, the best test along training in parentheses.
    assert full["runs"] == "1" and full["top-1 train (ours)"] == "90.00" and full["top-5 train (ours)"] == "99.00"
    assert full["top-1 test (ours)"] == "78.00 (78.00)" and full["top-5 test (ours)"] == "94.00 (94.00)"
    assert full["top-1 test (paper)"] == "77.84" and full["top-5 test (paper)"] == "93.92"
    assert full["top-1 train (paper)"] == "92.18"
    # No regularizer, two seeds: mean ± std of the finals, mean of the bests; the paper's best in parentheses.
    assert none["runs"] == "2" and none["top-1 train (ours)"] == "98.00 ± 1.41"
    assert none["top-1 test (ours)"] == "61.00 ± 1.41 (65.00)" and none["top-5 test (ours)"] == "83.00 ± 1.41 (87.00)"
    assert none["top-1 test (paper)"] == "59.80 (63.16)" and none["top-5 test (paper)"] == "80.38 (84.49)"
    assert none["top-1 train (paper)"] == "99.53" and none["top-5 train (paper)"] == "100.00"
    # Random labels with weight decay: train fitted, test at chance.
    assert rand_wd["runs"] == "1" and rand_wd["top-1 train (ours)"] == "85.00" and rand_wd["top-5 train (ours)"] == "95.00"
    assert rand_wd["top-1 test (ours)"] == "0.10 (0.12)" and rand_wd["top-1 test (paper)"] == "0.12"
    assert rand_wd["top-5 test (ours)"] == "0.40 (0.60)"  # its best from the history: no summary metric
    # Rows without a run: ours empty, the paper's numbers still there.
    for row in (aug_only, wd_only, rand_dw, rand):
        assert row["runs"] == "0" and all(row[f"{m} (ours)"] == "—" for m in ("top-1 train", "top-5 train",
                                                                              "top-1 test", "top-5 test"))
    assert wd_only["top-1 test (paper)"] == "67.18 (72.57)" and rand["top-5 test (paper)"] == "0.56"

    csv = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert csv.loc[3, "top-1 test (ours)"] == pytest.approx(61.0) and csv.loc[3, "best top-1 test (ours)"] == pytest.approx(65.0)
    assert csv.loc[3, "best top-1 test (paper)"] == pytest.approx(63.16) and pd.isna(csv.loc[0, "best top-1 test (paper)"])
    assert pd.isna(csv.loc[1, "top-1 test (ours)"]) and csv.loc[1, "runs"] == 0

    readme = (tmp_path / "out" / "README.md").read_text()
    section = readme.split("## Table 2 / Fig. 2a (ImageNet)")[1].split("\n## ")[0]
    assert "4 ImageNet Inception v3 run(s) used (scale cpu, seeds [0, 1])" in section
    assert "fixed subset of the training set in eval mode" in section and "TensorFlow" in section
    assert "| 61.00 ± 1.41 (65.00) |" in section and "inception_v3: 1,281,167 training images" in section
    assert "rmsprop_tf, LR x0.16 every 30 epochs (4 runs)" in section and "): 10,000 training images (4 runs)" in section
    assert "Also 4 ImageNet Inception v3 run(s)" in readme and "![fig2a](fig2a.png)" in readme
    assert readme.startswith("# rethink report — scale: cpu\n\n1 runs used: FINISHED CIFAR-10")
    deviations = readme.split("## Deviations from the paper")[1].split("\n## ")[0]
    assert "How the 1 runs used" in deviations and "inception_v3" not in deviations and "imagenet" not in deviations

    df = report.load_runs(uri, scale="cpu")
    fig = report.fig2a(df, uri)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"train (aug, dropout, wd)", "test (aug, dropout, wd)", "train (no regularizer)",
            "test (no regularizer)"} <= set(lines)
    assert not any("wd)" in k and "random" in k for k in lines) and len([k for k in lines if k.startswith("test")]) == 2
    assert list(lines["test (no regularizer)"].get_ydata()) == pytest.approx([55, 64, 60])  # seed 0, in %
    assert list(lines["train (no regularizer)"].get_xdata()) == [1, 2, 3]  # thousands of steps
    assert lines["test (no regularizer)"].get_linestyle() == "--" and lines["train (no regularizer)"].get_linestyle() == "-"
    assert ax.get_xlabel() == "thousands of training steps" and "scale=cpu" in ax.get_title()
    plots.close(fig)


def test_cifar_tables_ignore_imagenet_runs(stores, tmp_path):
    cifar_uri, both_uri = (f"sqlite:///{db}" for db in stores)
    df = report.load_runs(both_uri, scale="cpu")
    assert set(df["dataset"]) == {"cifar10", "imagenet"} and len(runs.imagenet_runs(df)) == 4
    assert list(runs.cifar_runs(df)["model"]) == ["mlp_1x512"]
    only_cifar = report.load_runs(cifar_uri, scale="cpu")
    for build in (report.table1, report.table4, report.fig1_frame):  # given every run used, as tests and users call them
        pd.testing.assert_frame_equal(build(df), build(only_cifar))
    t1 = report.table1(df).set_index(["model", "weight decay"])
    assert t1.loc[("mlp_1x512", "no"), "test (ours)"] == "50.00" and t1["runs"].sum() == 1
    assert report.fig2a(only_cifar, cifar_uri) is None and report.table2(only_cifar)["runs"].sum() == 0

    files = {p.name for p in report.write_report(cifar_uri, tmp_path / "cifar", scale="cpu")}
    assert not any(f.startswith(("table2", "fig2a")) for f in files)
    plain = (tmp_path / "cifar" / "README.md").read_text()
    assert "ImageNet" not in plain and "fig2a" not in plain
    report.write_report(both_uri, tmp_path / "both", scale="cpu")
    for name in ("table1.md", "table4.md", "fig1bc.csv"):
        assert (tmp_path / "both" / name).read_text() == (tmp_path / "cifar" / name).read_text()
    section = "\n## Table 1\n"
    with_inet = (tmp_path / "both" / "README.md").read_text()
    assert with_inet.split(section)[1].split("\n## Table 4")[0] == plain.split(section)[1].split("\n## Table 4")[0]


def test_rows_are_matched_by_params():
    """Augmentation is crop and flip together; weight decay is the presets' coefficient; the row tag is ignored."""
    base = {"dataset": "imagenet", "model": "inception_v3", "kind": "labels", "level": 0.0, "crop": True,
            "flip": True, "rotate": False, "dropout": False, "wd": True, "weight_decay": 4e-5, "seed": 0,
            "row": "t2_inception_v3_none"}
    df = pd.DataFrame([base, base | {"flip": False}, base | {"weight_decay": 1e-4},
                       base | {"dataset": "cifar10"}, base | {"model": "inception"}])
    assert list(imagenet.select(df, True, False, True, False).index) == [0]
    assert imagenet.select(df, False, False, False, False).empty
    assert imagenet.setting(True, False, True) == "aug, wd" and imagenet.setting(False, False, False) == "no regularizer"
