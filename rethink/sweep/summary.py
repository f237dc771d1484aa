"""The sweep's parent run summarises its jobs when the sweep ends: a figure of the generalization
gap and the test accuracy against the corruption level p, a table with one row per job, and the
run's description (`mlflow.note.content`, shown on its MLflow page) with the outcome and the table.

Jobs are the parent's children (tag `mlflow.parentRunId`) and the earlier runs its `skipped.<n>`
tags point to (identical jobs that had FINISHED before). Reads and writes the store through
`rethink.run.track`.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from rethink.plots import Figure, subplots
from rethink.regularizers import switched_on
from rethink.run import open_run, track

log = logging.getLogger(__name__)

NAME = "sweep_summary"  # artifacts: NAME.png, .pdf (figure), .md, .csv (table)
NOTE_MAX = 7500  # MLflow cuts tag values at 8000 characters
SKIPPED = "skipped (FINISHED before)"
NUMERIC = ["p", "train_acc", "test_acc", "gap", "epochs", "fit_step"]
def regularizer_label(params: dict[str, str]) -> str:
    """The regularizers a job switched on, e.g. "weight_decay+random_crop", or "none"."""
    on = switched_on({k.removeprefix("regularizer."): v for k, v in params.items() if k.startswith("regularizer.")})
    return "+".join(s.key for s in on) or "none"


def job_row(run: Any, job: float, status: str) -> dict[str, Any]:
    """One job's row, params and metrics as the store holds them (converted to numbers later)."""
    p, m = run.data.params, run.data.metrics
    return {"job": job, "run": run.info.run_name, "run_id": run.info.run_id, "status": status,
            "overrides": run.data.tags.get("overrides", ""),
            "task": p.get("task.name", "train"), "model": p.get("model.name"), "kind": p.get("corruption.kind"),
            "regularizer": regularizer_label(p), "p": p.get("corruption.level"),
            "train_acc": m.get("train/acc"), "test_acc": m.get("test/acc"), "gap": m.get("generalization_gap"),
            "epochs": m.get("epochs"), "fit_step": m.get("fit_step")}


def job_number(value: str | None) -> float:
    """A job number from a tag (NaN when missing, so such rows sort last)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return math.nan


def sweep_frame(uri: str, parent_id: str) -> pd.DataFrame:
    """The sweep's jobs, one row each in job order: its children, then the runs it skipped to."""
    parent = track.get_run(uri, parent_id)
    children = track.search(uri, parent.info.experiment_id, f"tags.`mlflow.parentRunId` = '{parent_id}'",
                            max_results=50000)
    rows = [job_row(r, job_number(r.data.tags.get("job_num")), r.info.status) for r in children]
    seen = {r.info.run_id for r in children}
    for key, run_id in parent.data.tags.items():
        if key.startswith("skipped.") and run_id not in seen:
            seen.add(run_id)
            try:
                rows.append(job_row(track.get_run(uri, run_id), job_number(key.removeprefix("skipped.")), SKIPPED))
            except Exception as e:  # deleted meanwhile, say: the others still make a summary
                log.warning("sweep summary: skipped job %s points to run %s, which cannot be read: %s", key, run_id, e)
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    for column in NUMERIC:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["gap"] = df["gap"].fillna(df["train_acc"] - df["test_acc"])
    return df.sort_values(["job", "run"], na_position="last").reset_index(drop=True)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The summary table, one row per job, as text: numbers rounded, blanks where a value is missing."""
    training = df["task"] == "train"

    def fmt(values: pd.Series, spec: str) -> pd.Series:
        return values.map(lambda v: "" if pd.isna(v) else format(v, spec))

    fit = fmt(df["fit_step"], ".0f").where(df["fit_step"].notna() | ~training, "not fitted")
    return pd.DataFrame({"run": df["run"], "p": fmt(df["p"], "g"), "train acc": fmt(df["train_acc"], ".4f"),
                         "test acc": fmt(df["test_acc"], ".4f"), "gap": fmt(df["gap"], ".4f"),
                         "epochs": fmt(df["epochs"], ".0f"), "fit step": fit, "status": df["status"]})


def markdown(rows: pd.DataFrame) -> str:
    """A Markdown table (pipes in cells escaped)."""
    cells = [[str(v).replace("|", "\\|") for v in row] for row in rows.itertuples(index=False)]
    lines = ["| " + " | ".join(rows.columns) + " |", "|" + "---|" * len(rows.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def plottable(df: pd.DataFrame) -> pd.DataFrame:
    """Training jobs that FINISHED (now or before) with a corruption level and a test accuracy."""
    ok = df["status"].isin(["FINISHED", SKIPPED]) & (df["task"] == "train") & df["p"].notna() & df["test_acc"].notna()
    return df[ok]


def figure(df: pd.DataFrame) -> Figure | None:
    """Generalization gap and test accuracy (%) against p, one line per model/corruption/regularizer
    group (the mean over repeated seeds); None when no job has both."""
    points = plottable(df)
    if points.empty:
        return None
    fig, (ax_gap, ax_acc) = subplots(1, 2, figsize=(10, 3.8))
    groups = points.assign(group=points["model"].fillna("?") + ", " + points["kind"].fillna("?") + ", "
                           + points["regularizer"])
    for label, g in groups.groupby("group", sort=True):
        mean = g.groupby("p")[["gap", "test_acc"]].mean()
        ax_gap.plot(mean.index, 100 * mean["gap"], "o-", label=label)
        ax_acc.plot(mean.index, 100 * mean["test_acc"], "o-", label=label)
    ax_gap.set(xlabel="corruption level p", ylabel="train acc - test acc (%)", title="generalization gap")
    ax_acc.set(xlabel="corruption level p", ylabel="test accuracy (%)", ylim=(0, 100), title="test accuracy")
    for ax in (ax_gap, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def note(overrides: str, outcome: dict[str, Any], rows: pd.DataFrame, has_figure: bool) -> str:
    """The parent run's description: the command's overrides, the jobs' outcome and the table
    (cut, with a pointer to the full table, so the text fits in one MLflow tag)."""
    head = [f"**Sweep** over `{overrides}`" if overrides else "**Sweep** (no overrides)", "",
            f"{outcome.get('jobs_finished', 0)} jobs finished, {outcome.get('jobs_failed', 0)} failed or killed, "
            f"{outcome.get('jobs_skipped', 0)} skipped (an identical run had FINISHED before); "
            f"sweep {outcome.get('status', '?')}.", ""]
    if has_figure:
        head += [f"Generalization gap and test accuracy against p: `{NAME}.png`; the table: `{NAME}.md`, `{NAME}.csv`.", ""]
    text = "\n".join(head) + "\n"
    if rows.empty:
        return text
    lines, kept = markdown(rows).splitlines(), []
    for line in lines:
        if len(text) + len(line) + 1 > NOTE_MAX - 60:  # room for the line that says how many more
            break
        kept.append(line)
        text += line + "\n"
    if len(kept) < len(lines):
        text += f"\n... {len(lines) - len(kept)} more rows in `{NAME}.md`\n"
    return text


def csv_frame(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The table for machines: full-precision numbers, whole numbers as such, fit step or "not fitted",
    and each job's overrides (the run name does not show a swept trainer.lr, say)."""
    out = df[["job", "run", "run_id", *NUMERIC, "status", "overrides"]].copy()
    for column in ("job", "epochs"):
        out[column] = out[column].round().astype("Int64")
    out["fit_step"] = rows["fit step"].where(rows["fit step"] != "", None)
    return out


def write_files(out: Path, df: pd.DataFrame, rows: pd.DataFrame, fig: Figure | None) -> list[Path]:
    """The table (.md, .csv) and the figure (.png, .pdf, when there is one) under `out`; closes the figure."""
    files = [out / f"{NAME}.md", out / f"{NAME}.csv"]
    files[0].write_text(markdown(rows))
    csv_frame(df, rows).to_csv(files[1], index=False)
    if fig is None:
        return files
    try:
        for suffix in (".png", ".pdf"):
            files.append(out / f"{NAME}{suffix}")
            fig.savefig(files[-1], dpi=120)
    finally:
        fig.clear()
    return files


def summarize(uri: str, parent_id: str, outcome: dict[str, Any]) -> list[str]:
    """Log the figure (when there is something to plot) and the table on the parent run, and set
    its description; returns the artifact names logged. Called before the parent run ends."""
    df = sweep_frame(uri, parent_id)
    overrides = track.get_run(uri, parent_id).data.tags.get("overrides", "")
    if df.empty:
        log.info("sweep summary: no job ran or was skipped, nothing to tabulate")
        track.set_run_tags(uri, parent_id, {track.NOTE: note(overrides, outcome, pd.DataFrame(), False)})
        return []
    rows, fig = table(df), figure(df)
    if fig is None:
        log.info("sweep summary: no finished training job with a corruption level, so no figure (table only)")
    with tempfile.TemporaryDirectory(prefix="rethink-sweep-") as tmp:
        files = write_files(Path(tmp), df, rows, fig)
        run = open_run.JobRun(uri, parent_id)
        for f in files:
            run.log_artifact(f)
    track.set_run_tags(uri, parent_id, {track.NOTE: note(overrides, outcome, rows, fig is not None)})
    return [f.name for f in files]
