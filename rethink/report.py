"""MLflow runs -> the paper's tables (CSV + Markdown) and figures (PNG + PDF), the paper's numbers beside ours.

    python -m rethink.report [--scale cpu|paper] [--budget standard|any] [--out reports/NAME] [--tracking-uri URI]

Reads the runs with `mlflow.search_runs` (never log files) and uses, on purpose, only FINISHED
CIFAR-10 training runs of the requested scale (tag `scale`) that ran their preset's own budget (tag
`budget` = standard); every other run of the experiment is listed, with the reason, under "Runs not
used" in the report's README. Runs are matched to the paper's rows by their params (model,
regularizers, corruption), so a run made by any sweep counts; repeated seeds are averaged (mean and
std), and of two runs of one config (rerun=true) the newer counts. One function per table or
figure; kept as one module so that the rules that select runs for the paper's rows live in one place.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import pandas as pd

from rethink import plots, track
from rethink.plots import plt
from rethink.redact import redact

log = logging.getLogger(__name__)

# Table 1 (CIFAR-10 accuracy, %): model, random crop, weight decay, random labels, train, test.
PAPER_TABLE1 = [
    ("inception", True, True, False, 100.0, 89.05), ("inception", True, False, False, 100.0, 89.31),
    ("inception", False, True, False, 100.0, 86.03), ("inception", False, False, False, 100.0, 85.75),
    ("inception", False, False, True, 100.0, 9.78),
    ("inception_nobn", False, True, False, 100.0, 83.00), ("inception_nobn", False, False, False, 100.0, 82.00),
    ("inception_nobn", False, False, True, 100.0, 10.12),
    ("alexnet", True, True, False, 99.90, 81.22), ("alexnet", True, False, False, 99.82, 79.66),
    ("alexnet", False, True, False, 100.0, 77.36), ("alexnet", False, False, False, 100.0, 76.07),
    ("alexnet", False, False, True, 99.82, 9.86),
    ("mlp_3x512", False, True, False, 100.0, 53.35), ("mlp_3x512", False, False, False, 100.0, 52.39),
    ("mlp_3x512", False, False, True, 100.0, 10.48),
    ("mlp_1x512", False, True, False, 99.80, 50.39), ("mlp_1x512", False, False, False, 100.0, 50.51),
    ("mlp_1x512", False, False, True, 99.34, 10.61),
]
# Table 4 (Appendix E): random labels with a regularizer -> paper train accuracy (None: fails to converge).
PAPER_TABLE4 = [("inception", "weight_decay", 100.0), ("alexnet", "weight_decay", None),
                ("mlp_3x512", "weight_decay", 100.0), ("mlp_1x512", "weight_decay", 99.21),
                ("inception", "random_crop", 99.93), ("inception", "augment", 99.28)]
# Figure 1c: test error at p = 0, read off the figure (approximate).
PAPER_FIG1C_P0 = {"inception": 0.14, "alexnet": 0.24, "mlp_1x512": 0.49}
FIG1_MODELS = ("inception", "alexnet", "mlp_1x512")
MODEL_COLORS = {"inception": "C0", "alexnet": "C1", "mlp_1x512": "C2"}  # one colour per model in every figure
FIG1A_CURVES = [("labels", 0.0, "true labels"), ("labels", 1.0, "random labels"), ("shuffled_pixels", 1.0, "shuffled pixels"),
                ("random_pixels", 1.0, "random pixels"), ("gaussian", 1.0, "gaussian")]
NUM_CLASSES = 10  # CIFAR-10: chance is 10 % test accuracy, test error 0.9, loss ln 10
STANDARD = ("standard",)  # the budgets the paper tables use by default
UNTAGGED = "untagged"  # the budget of a run recorded before runs were tagged with one
REQUIRED_PARAMS = {"model": "model.name", "kind": "corruption.kind", "level": "corruption.level", "seed": "seed"}
REQUIRED_METRICS = {"train_acc": "train/acc", "test_acc": "test/acc", "steps": "steps"}
UNUSED_COLUMNS = ["run", "run id", "status", "reason"]
TRUE = {"true", "1", "1.0"}


# --- reading and selecting runs ---------------------------------------------------------------

def _col(raw: pd.DataFrame, key: str) -> pd.Series:
    """Column `key` of search_runs' frame, or all-missing where no run has it."""
    return raw[key] if key in raw else pd.Series(None, index=raw.index, dtype=object)


def _num(raw: pd.DataFrame, key: str) -> pd.Series:
    """A param or metric as numbers: "0", "0.0" and 0.0 alike; anything unreadable is NaN."""
    return pd.to_numeric(_col(raw, key), errors="coerce").astype(float)


def _flag(raw: pd.DataFrame, key: str) -> pd.Series:
    """A boolean param ("True"/"False", or 1/0) as bools; missing is False."""
    return _col(raw, key).map(lambda v: str(v).strip().lower() in TRUE).astype(bool)


def read_runs(uri: str, experiment: str = "rethink") -> pd.DataFrame:
    """Every run of the experiment, whatever its status or kind, as one typed row (nothing filtered)."""
    raw = track.runs_frame(uri, experiment)
    if raw.empty:
        return pd.DataFrame()
    p, m = (lambda k: _col(raw, f"params.{k}")), (lambda k: _num(raw, f"metrics.{k}"))  # noqa: E731
    return pd.DataFrame({
        "run_id": raw["run_id"], "run": _col(raw, "tags.mlflow.runName"), "status": _col(raw, "status"),
        "start_time": _col(raw, "start_time"), "config_hash": _col(raw, "tags.config_hash").fillna(raw["run_id"]),
        "run_kind": _col(raw, "tags.kind"), "task": p("task.name"), "dataset": p("dataset.name"),
        "scale": _col(raw, "tags.scale").combine_first(p("choice.scale")),
        "budget": _col(raw, "tags.budget"), "budget_overrides": _col(raw, "tags.budget_overrides"),
        "paper": _col(raw, "tags.paper"), "row": _col(raw, "tags.row"),
        "model": p("model.name"), "kind": p("corruption.kind"), "level": _num(raw, "params.corruption.level"),
        "crop": _flag(raw, "params.regularizer.random_crop"), "flip": _flag(raw, "params.regularizer.flip"),
        "wd": _num(raw, "params.regularizer.weight_decay").fillna(0) > 0,
        "dropout": _num(raw, "params.regularizer.dropout").fillna(0) > 0,
        "seed": _num(raw, "params.seed"), "train_size": _num(raw, "params.train_examples"),
        "target": _num(raw, "params.trainer.target_train_acc"),
        "train_acc": m("train/acc"), "test_acc": m("test/acc"), "fit_step": m("fit_step"),
        "fit_epoch": m("fit_epoch"), "steps": m("steps"), "epochs": m("epochs"), "wall_time": m("wall_time"),
        "stop_reason": _col(raw, "tags.stop_reason"), "device": _col(raw, "tags.device"),
    })


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _budget_reason(r: dict, budgets: tuple[str, ...] | None) -> str | None:
    """Why the run's budget keeps it out of the paper tables (None: it does not)."""
    budget = UNTAGGED if _missing(r["budget"]) else str(r["budget"])
    if budgets is None or budget in budgets:
        return None
    if budget == UNTAGGED:
        return "untagged: no budget tag (an older run; its budget is unknown)"
    if budget == "custom":
        overrides = "" if _missing(r["budget_overrides"]) else str(r["budget_overrides"])
        return f"custom budget: {overrides or '(overrides not recorded)'}"
    return f"budget {budget}"


def why_not_used(r: dict, scale: str | None, budgets: tuple[str, ...] | None = STANDARD) -> str | None:
    """The first reason a run (one row of `read_runs`) is not used for the paper tables; None: it is."""
    if r["status"] != "FINISHED":
        return f"status {r['status']}"
    if not _missing(r["task"]) and r["task"] != "train":
        return f"not a training run (task={r['task']})"
    if _missing(r["dataset"]):
        return "not a training run (no dataset.name param)"
    if r["dataset"] != "cifar10":
        return f"dataset {r['dataset']} (the paper's tables are CIFAR-10)"
    if scale and r["scale"] != scale:
        return "no scale recorded" if _missing(r["scale"]) else f"other scale: {r['scale']}"
    if reason := _budget_reason(r, budgets):
        return reason
    if missing := [k for c, k in REQUIRED_PARAMS.items() if _missing(r[c])]:
        return "missing or unreadable params: " + ", ".join(missing)
    if missing := [k for c, k in REQUIRED_METRICS.items() if _missing(r[c])]:
        return "missing metrics: " + ", ".join(missing)
    return None


def split_runs(runs: pd.DataFrame, scale: str | None,
               budgets: tuple[str, ...] | None = STANDARD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs used, runs not used with the reason): what `why_not_used` admits, newest per config_hash.

    Sweep parent runs (tag kind=sweep) are bookkeeping, not results, and are in neither frame.
    """
    if runs.empty:
        return runs, pd.DataFrame(columns=UNUSED_COLUMNS)
    runs = runs[runs["run_kind"] != "sweep"].sort_values("start_time")
    reasons = pd.Series([why_not_used(r, scale, budgets) for r in runs.to_dict("records")], index=runs.index, dtype=object)
    ok = runs[reasons.isna()]
    # Of several runs of one config (rerun=true), the newest counts.
    newest = ok.drop_duplicates("config_hash", keep="last").set_index("config_hash")["run_id"]
    older = ok["run_id"] != ok["config_hash"].map(newest)
    reasons[older[older].index] = [f"superseded by a newer run of the same config ({newest[h][:8]})"
                                   for h in ok.loc[older, "config_hash"]]
    used = runs[reasons.isna()].reset_index(drop=True)
    out = runs[reasons.notna()].assign(reason=reasons)
    unused = pd.DataFrame({"run": out["run"], "run id": out["run_id"], "status": out["status"], "reason": out["reason"]})
    return used, unused.sort_values(["reason", "run"], key=lambda s: s.astype(str)).reset_index(drop=True)


def load_runs(uri: str, experiment: str = "rethink", scale: str | None = None,
              budgets: tuple[str, ...] | None = STANDARD) -> pd.DataFrame:
    """The runs the paper tables use: FINISHED CIFAR-10 training runs of `scale` with a standard budget."""
    return split_runs(read_runs(uri, experiment), scale, budgets)[0]


# --- tables -------------------------------------------------------------------------------------

def _no_reg(df: pd.DataFrame) -> pd.Series:
    return ~df["crop"] & ~df["wd"] & ~df["flip"] & ~df["dropout"]


def _select(df: pd.DataFrame, model: str, crop: bool, wd: bool, flip: bool, kind: str, level: float) -> pd.DataFrame:
    if df.empty:
        return df
    return df[(df["model"] == model) & (df["crop"] == crop) & (df["wd"] == wd) & (df["flip"] == flip) & ~df["dropout"]
              & (df["kind"] == kind) & ((df["level"] - level).abs() < 1e-9)]


def _fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return "—"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")


def _fitted(sel: pd.DataFrame) -> str:
    """`2/2` when every run reached the target training accuracy; otherwise says that not all did."""
    n, k = len(sel), int(sel["fit_step"].notna().sum()) if len(sel) else 0
    if n == 0:
        return "—"
    return f"{k}/{n}" if k == n else f"{k}/{n} (not all reached the target)"


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1 in the paper's layout: our train/test accuracy (%) beside the paper's, and the difference."""
    rows = []
    for model, crop, wd, random, p_train, p_test in PAPER_TABLE1:
        sel = _select(df, model, crop, wd, False, "labels", 1.0 if random else 0.0)
        tr, te = (100 * sel["train_acc"], 100 * sel["test_acc"]) if len(sel) else (pd.Series(), pd.Series())
        rows.append({"model": model + (" (random labels)" if random else ""), "random crop": "yes" if crop else "no",
                     "weight decay": "yes" if wd else "no", "runs": len(sel),
                     "train (ours)": _fmt(tr.mean(), tr.std(), len(sel)), "train (paper)": p_train,
                     "test (ours)": _fmt(te.mean(), te.std(), len(sel)), "test (paper)": p_test,
                     "test diff": round(te.mean() - p_test, 2) if len(sel) else None, "fitted": _fitted(sel)})
    return pd.DataFrame(rows)


def table4(df: pd.DataFrame) -> pd.DataFrame:
    """Table 4: training accuracy (%) on random labels with an explicit regularizer."""
    rows = []
    for model, reg, p_train in PAPER_TABLE4:
        crop, wd, flip = reg in ("random_crop", "augment"), reg == "weight_decay", reg == "augment"
        sel = _select(df, model, crop, wd, flip, "labels", 1.0)
        tr, te = (100 * sel["train_acc"], 100 * sel["test_acc"]) if len(sel) else (pd.Series(), pd.Series())
        rows.append({"model": model, "regularizer": reg, "runs": len(sel), "train (ours)": _fmt(tr.mean(), tr.std(), len(sel)),
                     "train (paper)": "fails to converge" if p_train is None else p_train,
                     "test (ours)": _fmt(te.mean(), te.std(), len(sel)), "fitted": _fitted(sel)})
    return pd.DataFrame(rows)


FIG1_COLUMNS = ["model", "level", "runs", "fit", "test_error", "relative_time", "censored", "p0_censored",
                "time to overfit / p=0"]


def _ratio_text(rel: float, censored: bool, p0_censored: bool) -> str:
    """The relative time as the table writes it: `2.00`, `>= 3.79` (a lower bound), or why there is none."""
    if not pd.isna(rel):
        return f">= {rel:.2f}" if censored else f"{rel:.2f}"
    return "p=0 censored" if p0_censored else "no p=0 run"


def _with_baseline(sel: pd.DataFrame) -> pd.DataFrame:
    """Each run with its time to overfit relative to the p = 0 run of its model and seed (newest one).

    A run that never reached the target is censored: its last step is a lower bound on its time, so
    its ratio is a lower bound. A censored p = 0 run gives its model/seed no ratio at all (NaN).
    """
    sel = sel.assign(censored=sel["fit_step"].isna(), overfit_step=sel["fit_step"].fillna(sel["steps"]))
    base = (sel[sel["level"].abs() < 1e-9].sort_values("start_time").drop_duplicates(["model", "seed"], keep="last")
            [["model", "seed", "overfit_step", "censored"]]
            .rename(columns={"overfit_step": "base_step", "censored": "base_censored"}))
    sel = sel.merge(base, on=["model", "seed"], how="left")
    sel["p0_censored"] = sel["base_censored"].eq(True)
    sel["relative_time"] = (sel["overfit_step"] / sel["base_step"]).where(sel["base_censored"].eq(False))
    return sel


def _fig1_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs Fig. 1b/1c draw: the three models, label corruption, no explicit regularizer."""
    return df[df["model"].isin(FIG1_MODELS) & (df["kind"] == "labels") & _no_reg(df)] if len(df) else df


def fig1_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per Fig. 1 model and level p: mean test error, and time to overfit relative to p = 0 (same seed).

    `relative_time` is the mean over the seeds that have a ratio; `censored`: some of those runs never
    reached the target, so the mean is a lower bound; `p0_censored`: no ratio because p = 0 never did;
    `fit`: how many of the `runs` reached the target.
    """
    sel = _fig1_runs(df)
    if sel.empty:
        return pd.DataFrame(columns=FIG1_COLUMNS)
    sel = _with_baseline(sel)
    sel["ratio_censored"] = sel["censored"] & sel["relative_time"].notna()
    f1 = (sel.groupby(["model", "level"])
             .agg(runs=("run_id", "count"), fit=("fit_step", "count"), test_error=("test_acc", lambda s: 1 - s.mean()),
                  relative_time=("relative_time", "mean"), censored=("ratio_censored", "any"),
                  p0_censored=("p0_censored", "any"))
             .reset_index())
    f1["time to overfit / p=0"] = [_ratio_text(*t) for t in zip(f1["relative_time"], f1["censored"], f1["p0_censored"], strict=True)]
    return f1[FIG1_COLUMNS]


def fig1_table(f1: pd.DataFrame) -> pd.DataFrame:
    """The Fig. 1b/1c data as the README shows it (the CSV keeps every column)."""
    fitted = [f"{k}/{n}" for k, n in zip(f1["fit"], f1["runs"], strict=True)]
    return pd.DataFrame({"model": f1["model"], "p": f1["level"], "runs": f1["runs"], "fitted": fitted,
                         "test error": f1["test_error"].round(4), "time to overfit / p=0": f1["time to overfit / p=0"]})


# --- figures ------------------------------------------------------------------------------------

def _sizes(df: pd.DataFrame) -> dict[str, int]:
    """Training-set size per model (the largest, if runs differ)."""
    return {m: int(s.max()) for m, s in df.dropna(subset=["train_size"]).groupby("model")["train_size"]}


def _title(title: str, df: pd.DataFrame) -> str:
    """`title — scale=S, N training images`; the size left to the legend where models differ in it."""
    scales = sorted({str(s) for s in df["scale"].dropna()})
    sizes = set(_sizes(df).values())
    return plots.with_subtitle(title, "+".join(scales) or None, sizes.pop() if len(sizes) == 1 else None)


def _model_label(model: str, df: pd.DataFrame) -> str:
    """The model's legend label, with its training-set size where the models' sizes differ."""
    sizes = _sizes(df)
    if len(set(sizes.values())) > 1 and model in sizes:
        return f"{model} ({sizes[model]:,} images)"
    return model


def _legend_proxy(ax: plt.Axes, marker: str, label: str, **style) -> None:
    """A legend-only entry (a marker style shared by several lines), drawn nowhere."""
    ax.plot([], [], marker, color="0.3", label=label, **style)


def _fig1_axes(title: str, df: pd.DataFrame) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.set_title(_title(title, df), fontsize=9.5)
    ax.grid(alpha=0.3)
    return fig, ax


def fig1b(f1: pd.DataFrame, df: pd.DataFrame) -> plt.Figure | None:
    """Time to overfit relative to p = 0 against label corruption p; censored values as upward triangles."""
    drawable, df = f1.dropna(subset=["relative_time"]), _fig1_runs(df)
    if drawable.empty:
        return None
    fig, ax = _fig1_axes("Fig. 1b: time to overfit vs label noise", df)
    for model in FIG1_MODELS:
        g = drawable[drawable["model"] == model]
        if g.empty:
            continue
        line, = ax.plot(g["level"], g["relative_time"], "-", color=MODEL_COLORS[model], label=_model_label(model, df))
        fit, cens = g[~g["censored"]], g[g["censored"]]
        ax.plot(fit["level"], fit["relative_time"], "o", color=line.get_color())
        ax.plot(cens["level"], cens["relative_time"], "^", ms=10, mfc="white", color=line.get_color())
    _legend_proxy(ax, "o", "reached the target")
    if drawable["censored"].any():
        _legend_proxy(ax, "^", "lower bound: run(s) stopped before the target", ms=10, mfc="white")
    no_ratio = sorted(set(f1.loc[f1["p0_censored"], "model"]) - set(drawable["model"]))
    if no_ratio:
        fig.text(0.01, 0.01, f"not drawn: {', '.join(no_ratio)} (its p = 0 run never reached the target: no ratio)",
                 fontsize=7, color="0.3")
    ax.set(xlabel="label corruption p", ylabel="time to overfit / time at p = 0")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.04 if no_ratio else 0, 1, 1))
    return fig


def fig1c(f1: pd.DataFrame, df: pd.DataFrame) -> plt.Figure | None:
    """Test error against label corruption p, the paper's p = 0 values as their own markers, and chance."""
    if f1.empty:
        return None
    df = _fig1_runs(df)
    fig, ax = _fig1_axes("Fig. 1c: test error vs label noise", df)
    unfit = False
    for model in FIG1_MODELS:
        g = f1[f1["model"] == model]
        if g.empty:
            continue
        line, = ax.plot(g["level"], g["test_error"], "o-", color=MODEL_COLORS[model], label=_model_label(model, df))
        partial = g[g["fit"] < g["runs"]]
        ax.plot(partial["level"], partial["test_error"], "o", mfc="white", color=line.get_color())
        ax.plot([0], [PAPER_FIG1C_P0[model]], "x", ms=9, mew=2, color=line.get_color())
        unfit |= not partial.empty
    _legend_proxy(ax, "x", "paper, p = 0 (read off its Fig. 1c)", ms=9, mew=2, ls="none")
    if unfit:
        _legend_proxy(ax, "o", "hollow: not all runs reached the target", mfc="white", ls="none")
    plots.chance_line(ax, 1 - 1 / NUM_CLASSES, f"{NUM_CLASSES} classes")
    ax.set(xlabel="label corruption p", ylabel="test error", ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _history(uri: str, run_id: str, key: str) -> pd.DataFrame:
    hist = track.metric_history(uri, run_id, key)
    return pd.DataFrame({"step": [s for s, _ in hist], "value": [v for _, v in hist]}).sort_values("step")


def fig1a(df: pd.DataFrame, uri: str) -> plt.Figure | None:
    """Inception's training loss per step for the five randomization tests (one seed each)."""
    curves = []
    for kind, level, label in FIG1A_CURVES:
        sel = _select(df, "inception", False, False, False, kind, level).sort_values("seed")
        h = _history(uri, sel.iloc[0]["run_id"], "train/loss") if len(sel) else pd.DataFrame()
        if not h.empty:
            curves.append((label, h, sel.iloc[:1]))
    if not curves:
        return None
    div, xlabel = plots.step_axis(max(h["step"].max() for _, h, _ in curves))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, h, _ in curves:
        ax.plot(h["step"] / div, h["value"], label=label)
    plots.chance_line(ax, math.log(NUM_CLASSES), f"uniform prediction, ln {NUM_CLASSES}")
    drawn = pd.concat([runs for _, _, runs in curves])
    ax.set_title(_title("Fig. 1a: Inception, randomization tests", drawn), fontsize=9.5)
    ax.set(xlabel=xlabel, ylabel="training loss (mean over epoch)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _fig2b_panel(ax: plt.Axes, model: str, tr: pd.DataFrame, te: pd.DataFrame, div: float, xlabel: str) -> None:
    """Train and test accuracy of one run; shaded: what early stopping at the best test accuracy gains."""
    best = te["value"].cummax()
    ax.plot(tr["step"] / div, 100 * tr["value"], label="train accuracy")
    ax.plot(te["step"] / div, 100 * te["value"], label="test accuracy")
    ax.fill_between(te["step"] / div, 100 * te["value"], 100 * best, color="C1", alpha=0.25,
                    label=f"cumulative best test (gain {100 * (best.iloc[-1] - te['value'].iloc[-1]):.2f} pts)")
    plots.chance_line(ax, 100 / NUM_CLASSES, f"{NUM_CLASSES} classes")
    ax.set(title=model if model == "inception" else f"{model} (no BatchNorm)", xlabel=xlabel, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def fig2b(df: pd.DataFrame, uri: str) -> plt.Figure | None:
    """Inception with/without BN: train and test accuracy per step, one panel per model that has a run."""
    panels = []
    for model in ("inception", "inception_nobn"):
        sel = _select(df, model, False, False, False, "labels", 0.0).sort_values("seed")
        if len(sel):
            tr, te = _history(uri, sel.iloc[0]["run_id"], "train/acc"), _history(uri, sel.iloc[0]["run_id"], "test/acc")
            if not tr.empty and not te.empty:
                panels.append((model, tr, te, sel.iloc[:1]))
    if not panels:
        return None
    div, xlabel = plots.step_axis(max(max(tr["step"].max(), te["step"].max()) for _, tr, te, _ in panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.5, 5 * len(panels)), 4), sharey=True, squeeze=False)
    for ax, (model, tr, te, _) in zip(axes[0], panels, strict=True):
        _fig2b_panel(ax, model, tr, te, div, xlabel)
    axes[0][0].set_ylabel("accuracy (%)")
    drawn = pd.concat([runs for *_, runs in panels])
    fig.suptitle(_title("Fig. 2b: BatchNorm and early stopping (no explicit regularizer)", drawn), fontsize=10)
    fig.tight_layout()
    return fig


# --- the report folder ----------------------------------------------------------------------------

CAPTIONS = {
    "fig1a": "Inception's training loss under the five randomization tests (one seed each); dotted: a uniform "
             "prediction's loss.",
    "fig1b": "Time to overfit (first step with train accuracy >= target) relative to p = 0, same model and seed. "
             "Open triangles are lower bounds: a run that stopped before the target is counted at its last step.",
    "fig1c": "Test error at the end of training; x: the paper's p = 0 values (read off its figure); dotted: chance. "
             "Hollow points: not all runs reached the target.",
    "fig2b": "Train and test accuracy per step; shaded: what stopping at the best test accuracy would gain.",
}


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (tabulate via DataFrame.to_markdown); missing values read `—`."""
    if frame.empty:
        return "(none)\n"
    cells = frame.astype(object).where(frame.notna(), None)
    return cells.to_markdown(index=False, missingval="—", disable_numparse=True) + "\n"


def _unfit_line(df: pd.DataFrame) -> str | None:
    """The README's line on runs that never reached the target, or None if all did."""
    unfit = df[df["fit_step"].isna()]
    if unfit.empty:
        return None
    runs = ", ".join(
        f"{r.model}{' +crop' if r.crop else ''}{' +flip' if r.flip else ''}{' +wd' if r.wd else ''} {r.kind}@{r.level:g} "
        f"(train {100 * r.train_acc:.1f}%, {r.stop_reason} after {r.steps:.0f} steps)" for r in unfit.itertuples())
    return (f"- {len(unfit)} run(s) never reached the target training accuracy: {runs}. A run that stops at its epoch "
            "cap had too few SGD steps for its data, not too little capacity: at scale=cpu the conv nets get a few "
            "hundred steps at most (compare the paper-scale GPU runs).")


def notes(df: pd.DataFrame, t1: pd.DataFrame, scale: str | None, unused: pd.DataFrame | None = None) -> str:
    """The report folder's README head: scale, data, seeds, stopping rule, and where we differ from the paper."""
    n_unused = 0 if unused is None else len(unused)
    sizes = _sizes(df)
    lines = [
        f"# rethink report — scale: {scale or 'all runs'}", "",
        f"{len(df)} runs used: FINISHED CIFAR-10 training runs"
        + (f" at scale={scale}" if scale else "") + " that ran their preset's standard budget"
        + (f", seeds {sorted(int(s) for s in df['seed'].unique())}, devices "
           f"{sorted(str(d) for d in df['device'].dropna().unique())}" if len(df) else "")
        + f". {n_unused} run(s) of the store not used: listed under [Runs not used](#runs-not-used).", "",
        "- **Data:** the local CIFAR-10 copy is re-encoded as JPEG (quality 75), so test accuracies run a little below "
        "the paper's. Training images per model: " + ("; ".join(f"{m}: {v:,}" for m, v in sizes.items()) or "—") + ".",
        "- **Stopping rule / time to overfit:** a run stops when its full-training-set accuracy (eval mode) reaches "
        f"{', '.join(f'{t:g}' for t in sorted(df['target'].dropna().unique())) or 'its target'}; 'time to overfit' is "
        "the SGD step where that first happened. A run that hit the epoch cap or stalled first is censored: its last "
        "step is only a lower bound, drawn as an open triangle in Fig. 1b and written `>= x` in its table; where the "
        "p = 0 run itself is censored there is no ratio (`p=0 censored`, not drawn).",
        "- **Accuracies** are the last epoch's: train = full training set in eval mode against the (possibly "
        "corrupted) training labels; test = true test labels. `fitted` counts the runs that reached the target.", "",
        "## Where we differ from the paper", "",
    ]
    big = [r for r in t1.dropna(subset=["test diff"]).to_dict("records") if abs(r["test diff"]) > 3]
    if scale == "cpu":
        lines.append("- At `scale=cpu` every model trains on a subset (see the sizes above; the paper used all 50,000 "
                     "images): the MLPs' test accuracy lands a few points below the paper's, the conv nets' far below. "
                     "The reduced scale shows the *effects* (fitting random labels, chance-level test accuracy at "
                     "p = 1, error rising with p), not the paper's absolute test numbers.")
        big = [r for r in big if r["model"].startswith("mlp")]  # the conv nets' gaps: the subset size, said above
    lines += [f"- {r['model']}, crop {r['random crop']}, wd {r['weight decay']}: test {r['test (ours)']} vs paper "
              f"{r['test (paper)']} ({r['test diff']:+.2f} points)." for r in big]
    if line := _unfit_line(df):
        lines.append(line)
    return "\n".join(lines) + "\n"


def _unused_section(unused: pd.DataFrame, sweeps: int) -> str:
    """The README's `Runs not used` section: every run the tables left out, and why."""
    text = "\n## Runs not used\n\n"
    if unused.empty:
        text += "Every training run of the experiment is used.\n"
    else:
        counts = unused["reason"].str.split(":").str[0].str.split(" \\(").str[0].value_counts()
        text += ("By reason: " + "; ".join(f"{why}: {n}" for why, n in counts.items()) + ".\n\n"
                 + _markdown(unused.assign(**{"run id": unused["run id"].str[:12]})))
    if sweeps:
        text += f"\n({sweeps} sweep parent run(s), tag kind=sweep, are bookkeeping, not results.)\n"
    return text


def _figures_section(figures: dict[str, list[Path]]) -> str:
    """Each figure embedded as PNG, with its caption and a link to the PDF."""
    text = "\n## Figures\n"
    for name, paths in figures.items():
        png, other = paths[0], paths[1:]
        links = " · ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in other)
        text += f"\n### {name}\n\n![{name}]({png.name})\n\n{CAPTIONS[name]} {links}\n"
    return text


def _build_figures(df: pd.DataFrame, f1: pd.DataFrame, uri: str, out: Path) -> dict[str, list[Path]]:
    """Every figure that has data, written as PNG + PDF; {name: paths}."""
    figures = {"fig1a": fig1a(df, uri), "fig1b": fig1b(f1, df), "fig1c": fig1c(f1, df), "fig2b": fig2b(df, uri)}
    written = {}
    for name, fig in figures.items():
        if fig is not None:
            written[name] = plots.save(fig, out / name)
            plots.close(fig)
    return written


def _resolve_scale(used: pd.DataFrame, scale: str | None) -> None:
    """Refuse to average runs of several scales into one table when no --scale was given."""
    scales = sorted({str(s) for s in used["scale"].dropna()}) if len(used) else []
    if scale is None and len(scales) > 1:
        raise SystemExit(f"runs of several scales ({', '.join(scales)}): pass --scale to pick one")


def write_report(uri: str, out: Path, experiment: str = "rethink", scale: str | None = None,
                 extra_notes: str = "", budgets: tuple[str, ...] | None = STANDARD) -> list[Path]:
    """Build every table and figure the selected runs support, and the README; return the files written."""
    runs = read_runs(uri, experiment)
    if runs.empty:
        raise SystemExit(f"no runs in {redact(uri)} (experiment {experiment!r})")
    df, unused = split_runs(runs, scale, budgets)
    _resolve_scale(df, scale)
    if df.empty:
        log.warning("no run of %s qualifies (scale %s, budget %s): the README lists why", redact(uri), scale or "any",
                    "/".join(budgets) if budgets else "any")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    t1, t4, f1 = table1(df), table4(df), fig1_frame(df)
    for name, frame, shown in (("table1", t1, t1), ("table4", t4, t4), ("fig1bc", f1, fig1_table(f1))):
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(_markdown(shown))
        written += [out / f"{name}.csv", out / f"{name}.md"]
    figures = _build_figures(df, f1, uri, out)
    written += [p for paths in figures.values() for p in paths]
    readme = notes(df, t1, scale, unused) + (f"\n{extra_notes.strip()}\n" if extra_notes else "")
    if budgets != STANDARD:
        readme += (f"\n**Budgets used: {'any' if budgets is None else ', '.join(budgets)}** — runs that did not run "
                   "their preset's budget are mixed in: this is not the paper's protocol.\n")
    readme += "\n## Table 1\n\n" + _markdown(t1) + "\n## Table 4\n\n" + _markdown(t4)
    readme += "\n## Figure 1b/1c data\n\n" + _markdown(fig1_table(f1))
    readme += _figures_section(figures)
    readme += _unused_section(unused, int((runs["run_kind"] == "sweep").sum()))
    (out / "README.md").write_text(readme)
    written.append(out / "README.md")
    return written


def log_report(uri: str, files: list[Path], name: str) -> str:
    """Log the report's files as artifacts of a run in the `rethink-reports` experiment."""
    exp = track.ensure_experiment(uri, "rethink-reports")
    with track.start_run(uri, exp, f"report-{name}", {"kind": "report"}) as run:
        for f in files:
            run.log_artifact(f)
    return run.run_id


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the paper's tables and figures from MLflow runs.")
    ap.add_argument("--tracking-uri", default=None, help="default: sqlite:///<cwd>/mlruns/mlflow.db")
    ap.add_argument("--experiment", default="rethink")
    ap.add_argument("--scale", default=None, help="only runs made at this scale (cpu | paper)")
    ap.add_argument("--budget", choices=("standard", "any"), default="standard",
                    help="standard (default): only runs that ran their preset's budget; any: also custom and "
                         "untagged runs (a smoke check of the pipeline, not the paper's protocol)")
    ap.add_argument("--out", default=None, help="default: reports/<scale or all>")
    ap.add_argument("--notes", default=None, help="a Markdown file appended to the report's README (provenance)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uri = args.tracking_uri or track.default_tracking_uri()
    out = Path(args.out or f"reports/{args.scale or 'all'}")
    extra = Path(args.notes).read_text() if args.notes else ""
    files = write_report(uri, out, args.experiment, args.scale, extra, STANDARD if args.budget == "standard" else None)
    run_id = log_report(uri, files, out.name)
    print(f"wrote {len(files)} files to {out}/ (also logged to MLflow run {run_id}):")
    for f in files:
        print(f"  {f}")


if __name__ == "__main__":
    main()
