"""MLflow runs -> the paper's tables (CSV + Markdown) and figures (PNG + PDF), the paper's numbers beside ours.

    python -m rethink.report [--scale cpu|paper] [--budget standard|any] [--out reports/NAME] [--tracking-uri URI]

Reads the runs with `mlflow.search_runs` (never log files) and uses, on purpose, only FINISHED
CIFAR-10 and ImageNet (Inception v3: Table 2, Fig. 2a) training runs of the requested scale (tag
`scale`) that ran their preset's own budget (tag `budget` = standard); every other run of the
experiment is listed, with the reason, under "Runs not used" in the report's README. Runs are
matched to the paper's rows by their params (data set, model, regularizers, corruption), so a run
made by any sweep counts; repeated seeds are averaged (mean and std), and of two runs of one config
(rerun=true) the newer counts. A store without ImageNet runs gets no Table 2 / Fig. 2a.

One job per module: `runs` (reading and selecting runs), `paper` (the paper's numbers and setup),
`tables`, `figures`, `imagenet` (Table 2, Fig. 2a and their section), `readme` (the README's text),
`deviations` (how the runs used differ from the paper's setup), `wd_sweep` (the weight decay sweep,
an extension); this module writes the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rethink.report import readme
from rethink.report.deviations import deviations_section
from rethink.report.figures import fig1a, fig1b, fig1c, fig2b, save_figures
from rethink.report.imagenet import fig2a, table2, table2_frame, table2_markdown, with_best
from rethink.report.imagenet import section as imagenet_section
from rethink.report.paper import PAPER_FIG1C_P0, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE4
from rethink.report.runs import (
    STANDARD,
    cifar_runs,
    imagenet_runs,
    load_runs,
    read_runs,
    require_one_scale,
    split_runs,
    why_not_used,
)
from rethink.report.tables import TABLE4_NOTE, fig1_frame, fig1_table, markdown, table1, table4
from rethink.report.wd_sweep import sweep_figure, sweep_frame, sweep_markdown
from rethink.run import open_run, track
from rethink.run.redact import redact

__all__ = ["PAPER_FIG1C_P0", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE4", "STANDARD", "cifar_runs",
           "deviations_section", "fig1_frame", "fig1_table", "fig1a", "fig1b", "fig1c", "fig2a", "fig2b",
           "imagenet_runs", "load_runs", "log_report", "markdown", "read_runs", "split_runs", "sweep_figure",
           "sweep_frame", "table1", "table2", "table2_frame", "table4", "why_not_used", "write_report"]

log = logging.getLogger(__name__)


def write_report(uri: str, out: Path, experiment: str = "rethink", scale: str | None = None,
                 extra_notes: str = "", budgets: tuple[str, ...] | None = STANDARD) -> list[Path]:
    """Build every table and figure the selected runs support, and the README; return the files written."""
    runs = read_runs(uri, experiment)
    if runs.empty:
        raise SystemExit(f"no runs in {redact(uri)} (experiment {experiment!r})")
    df, unused = split_runs(runs, scale, budgets)
    require_one_scale(df, scale)
    if df.empty:
        log.warning("no run of %s qualifies (scale %s, budget %s): the README lists why", redact(uri), scale or "any",
                    "/".join(budgets) if budgets else "any")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    inet, df = imagenet_runs(df), cifar_runs(df)  # the two halves of the paper; below, `df` is CIFAR-10's
    t1, t4, f1 = table1(df), table4(df), fig1_frame(df, uri)  # uri: train/acc histories for Fig. 1b's common threshold
    for name, frame, shown in (("table1", t1, t1), ("table4", t4, t4), ("fig1bc", f1, fig1_table(f1))):
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(markdown(shown))
        written += [out / f"{name}.csv", out / f"{name}.md"]
    ws = sweep_frame(df)
    if not ws.empty:
        ws.to_csv(out / "wd_sweep.csv", index=False)
        (out / "wd_sweep.md").write_text(sweep_markdown(ws))
        written += [out / "wd_sweep.csv", out / "wd_sweep.md"]
    if not inet.empty:
        inet = with_best(inet, uri)  # runs without the best_test_* summary: from their test histories
        table2_frame(inet).to_csv(out / "table2.csv", index=False)
        (out / "table2.md").write_text(table2_markdown(inet))
        written += [out / "table2.csv", out / "table2.md"]
    figures = save_figures({"fig1a": fig1a(df, uri), "fig1b": fig1b(f1, df), "fig1c": fig1c(f1, df),
                            "fig2a": fig2a(inet, uri), "fig2b": fig2b(df, uri), "wd_sweep": sweep_figure(ws, df)}, out)
    written += [p for paths in figures.values() for p in paths]
    text = readme.notes(df, t1, scale, unused, standard_only=budgets == STANDARD, imagenet=len(inet), f1=f1)
    text += f"\n{extra_notes.strip()}\n" if extra_notes else ""
    if budgets != STANDARD:
        text += (f"\n**Budgets used: {'any' if budgets is None else ', '.join(budgets)}** — runs that did not run "
                 "their preset's budget are mixed in: this is not the paper's protocol.\n")
    text += "\n## Table 1\n\n" + markdown(t1) + "\n## Table 4\n\n" + TABLE4_NOTE + markdown(t4)
    text += "\n## Figure 1b/1c data\n\n" + markdown(fig1_table(f1))
    if not ws.empty:
        text += "\n## Weight decay sweep (an extension)\n\n" + sweep_markdown(ws)
    if not inet.empty:
        text += imagenet_section(inet)
    text += readme.figures_section(figures)
    text += readme.unused_section(unused, int((runs["run_kind"] == "sweep").sum()))
    (out / "README.md").write_text(text)
    written.append(out / "README.md")
    return written


def log_report(uri: str, files: list[Path], name: str) -> str:
    """Log the report's files as artifacts of a run in the `rethink-reports` experiment."""
    exp = track.ensure_experiment(uri, "rethink-reports")
    with open_run.start_run(uri, exp, f"report-{name}", {"kind": "report"}) as run:
        for f in files:
            run.log_artifact(f)
    return run.run_id
