"""The sweep's parent run summarises its jobs when the sweep ends: figure, table, description; the
jobs' counts are tags. A real subprocess sweep on tiny CIFAR-10, and in-process sweeps of made-up
runs for what a training sweep never shows (theory jobs, no job, a summary that fails)."""

import csv
import logging
import re

import mlflow
import pytest
from conftest import run_cli

from rethink.run import lifecycle, open_run, track
from rethink.sweep import summary as sweep_summary

TINY = ["dataset.train_size=200", "dataset.test_size=100", "trainer.max_epochs=2"]
NOTE = "mlflow.note.content"
FIGURE, TABLE = {"sweep_summary.png", "sweep_summary.pdf"}, {"sweep_summary.md", "sweep_summary.csv"}


def artifacts(uri: str, run_id: str) -> set[str]:
    return {a.path for a in track.client(uri).list_artifacts(run_id)}


def read_artifact(uri: str, run_id: str, path: str, dst) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=uri)
    return open(local).read()


@pytest.mark.slow
def test_a_sweep_parent_run_carries_a_figure_a_table_and_a_description_of_its_jobs(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    res = run_cli(["-m", "corruption=0,1.0", *TINY, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_root,
                  env={"OMP_NUM_THREADS": "1"})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "sweep: 2 jobs FINISHED, 0 FAILED/KILLED, 0 skipped" in out and "WARNING" not in out, out[-3000:]
    c = track.client(uri)
    exp = c.get_experiment_by_name("rethink")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI shows runs, not GenAI
    runs = c.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = {r.info.run_name for r in runs if r.data.tags.get("kind") != "sweep"}
    assert parent.info.status == "FINISHED"
    # the counts are tags, not metrics (no charts for them)
    assert {k: parent.data.tags[k] for k in ("jobs_finished", "jobs_failed", "jobs_skipped")} == \
        {"jobs_finished": "2", "jobs_failed": "0", "jobs_skipped": "0"}
    assert not parent.data.metrics
    assert FIGURE | TABLE <= artifacts(uri, parent.info.run_id)
    rows = list(csv.DictReader(read_artifact(uri, parent.info.run_id, "sweep_summary.csv", tmp_path).splitlines()))
    assert sorted(float(r["p"]) for r in rows) == [0.0, 1.0] and {r["run"] for r in rows} == children
    assert {r["status"] for r in rows} == {"FINISHED"} and {r["overrides"].split()[1] for r in rows} == \
        {"corruption.level=0", "corruption.level=1.0"}
    for r in rows:
        assert abs(float(r["gap"]) - (float(r["train_acc"]) - float(r["test_acc"]))) < 1e-6
        assert r["epochs"] == "2" and r["fit_step"] == "not fitted"  # 2 epochs never fit
    table = read_artifact(uri, parent.info.run_id, "sweep_summary.md", tmp_path)
    assert table.startswith("| run | p | train acc | test acc | gap | epochs | fit step | status |")
    note = parent.data.tags[NOTE]
    assert "corruption=labels corruption.level=0,1.0" in note and "2 jobs finished" in note
    for name in children:
        assert name in note
    assert "| 0 |" in note and "| 1 |" in note


def store_with_sweep(tmp_path, jobs: list[tuple[dict, dict]]) -> tuple[str, str]:
    """A store with an open sweep parent and one FINISHED child per (params, metrics); (uri, parent id)."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    exp = track.ensure_experiment(uri, "rethink")
    parent = lifecycle.open_sweep(uri, exp, str(tmp_path / "sweep"), {"overrides": "task=kernel seed=0,1"})
    for n, (params, metrics) in enumerate(jobs):
        run_id = track.create_run(uri, exp, f"job{n}", {"mlflow.parentRunId": parent, "job_num": n})
        run = open_run.JobRun(uri, run_id)
        run.log_params(params)
        track.log_metrics(uri, run_id, metrics)
        track.end_run(uri, run_id, "FINISHED")
    return uri, parent


def test_a_sweep_of_theory_jobs_gets_the_table_but_no_figure(tmp_path):
    theory = ({"task.name": "kernel", "task.n": "100"}, {"kernel/error": 0.5})
    uri, parent = store_with_sweep(tmp_path, [theory, theory])
    outcome = lifecycle.close_sweep(uri, parent, True, summarize=lambda o: sweep_summary.summarize(uri, parent, o))
    assert outcome["status"] == "FINISHED"
    assert artifacts(uri, parent) == TABLE
    run = track.get_run(uri, parent)
    assert run.info.status == "FINISHED" and "| job0 |" in run.data.tags[NOTE] and "| job1 |" in run.data.tags[NOTE]
    assert "not fitted" not in run.data.tags[NOTE]  # fitting is not a theory job's business


def test_params_are_read_as_numbers_and_rows_follow_the_job_order(tmp_path):
    job = lambda p, wd: ({"task.name": "train", "model.name": "mlp", "corruption.kind": "labels",  # noqa: E731
                          "corruption.level": p, "regularizer.weight_decay": wd, "regularizer.random_crop": "False"},
                         {"train/acc": 1.0, "test/acc": 0.25, "epochs": 3, "fit_step": 12})
    uri, parent = store_with_sweep(tmp_path, [job("1", "0.0"), job("0.5", "0.0005"), job("0.0", "0")])
    df = sweep_summary.sweep_frame(uri, parent)
    assert list(df["p"]) == [1.0, 0.5, 0.0] and list(df["run"]) == ["job0", "job1", "job2"]
    assert list(df["gap"]) == [0.75] * 3  # no generalization_gap metric: train acc - test acc
    assert list(df["regularizer"]) == ["none", "weight_decay", "none"]
    rows = sweep_summary.table(df)
    assert list(rows["p"]) == ["1", "0.5", "0"] and list(rows["fit step"]) == ["12"] * 3
    fig = sweep_summary.figure(df)
    assert fig is not None and len(fig.axes[0].lines) == 2  # two groups: no regularizer, weight decay
    fig.clear()


def test_an_empty_sweep_or_a_failing_summary_never_keeps_the_parent_open(tmp_path, caplog):
    uri, parent = store_with_sweep(tmp_path, [])
    assert lifecycle.close_sweep(uri, parent, True, summarize=lambda o: sweep_summary.summarize(uri, parent, o)) \
        == {"jobs_finished": 0, "jobs_failed": 0, "jobs_running": 0, "jobs_skipped": 0, "status": "FINISHED"}
    run = track.get_run(uri, parent)
    assert run.info.status == "FINISHED" and "0 jobs finished" in run.data.tags[NOTE] and not artifacts(uri, parent)

    def broken(outcome):
        raise ValueError("no figure today")

    exp = track.ensure_experiment(uri, "rethink")
    other = lifecycle.open_sweep(uri, exp, str(tmp_path / "sweep2"), {})
    with caplog.at_level(logging.WARNING, logger="rethink.run.lifecycle"):
        assert lifecycle.close_sweep(uri, other, False, summarize=broken)["status"] == "FAILED"
    assert track.get_run(uri, other).info.status == "FAILED"
    assert "could not summarise the sweep" in caplog.text and "no figure today" in caplog.text


def test_the_description_of_a_big_sweep_fits_in_one_tag_and_points_to_the_full_table():
    import pandas as pd

    rows = pd.DataFrame({"run": [f"mlp_1x512-labels{i / 1000:g}-none-s0" for i in range(1000)], "status": "FINISHED"})
    text = sweep_summary.note("corruption=labels corruption.level=...", {"jobs_finished": 1000, "status": "FINISHED"},
                              rows, has_figure=True)
    assert len(text) <= sweep_summary.NOTE_MAX and "| mlp_1x512-labels0-none-s0 | FINISHED |" in text
    assert re.search(r"\.\.\. \d+ more rows in `sweep_summary.md`", text)
