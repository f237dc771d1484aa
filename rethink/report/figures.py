"""The paper's figures from the runs used: Fig. 1a (loss per step), 1b (time to overfit), 1c (test
error against label noise) and 2b (BatchNorm, early stopping), in one colour per model, PNG + PDF."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rethink import plots
from rethink.plots import subplots
from rethink.report.overfit import percent
from rethink.report.paper import FIG1_MODELS, FIG1A_CURVES, NUM_CLASSES, PAPER_FIG1C_P0
from rethink.report.runs import history, train_sizes
from rethink.report.tables import common_threshold, fig1_runs, select, target_label

MODEL_COLORS = {"inception": "C0", "alexnet": "C1", "mlp_1x512": "C2"}  # one colour per model in every figure


def figure_title(title: str, df: pd.DataFrame) -> str:
    """`title — scale=S, N training images`; the size left to the legend where models differ in it."""
    scales = sorted({str(s) for s in df["scale"].dropna()})
    sizes = set(train_sizes(df).values())
    return plots.with_subtitle(title, "+".join(scales) or None, sizes.pop() if len(sizes) == 1 else None)


def model_label(model: str, df: pd.DataFrame) -> str:
    """The model's legend label, with its training-set size where the models' sizes differ."""
    sizes = train_sizes(df)
    if len(set(sizes.values())) > 1 and model in sizes:
        return f"{model} ({sizes[model]:,} images)"
    return model


def legend_proxy(ax: Axes, marker: str, label: str, **style) -> None:
    """A legend-only entry (a marker style shared by several lines), drawn nowhere."""
    ax.plot([], [], marker, color="0.3", label=label, **style)


def shared_legend(fig: Figure, axes, ncol: int = 2) -> float:
    """One legend for every panel, below them (where it covers no curve); returns the height it takes (figure share)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    return 0.05 * math.ceil(len(entries) / ncol) + 0.01


def _fig1_axes(title: str, df: pd.DataFrame) -> tuple[Figure, Axes]:
    fig, ax = subplots(figsize=(6, 4.2))
    ax.set_title(figure_title(title, df), fontsize=9.5)
    ax.grid(alpha=0.3)
    return fig, ax


def _fig1b_common(ax: Axes, f1: pd.DataFrame, df: pd.DataFrame, threshold: float) -> None:
    """The time to the threshold every run reached: every point is data."""
    for model in FIG1_MODELS:
        g = f1[f1["model"] == model].dropna(subset=["relative_time_at_threshold"])
        if len(g):
            ax.plot(g["level"], g["relative_time_at_threshold"], "o-", color=MODEL_COLORS[model],
                    label=model_label(model, df))
    ax.set_title(f"to {percent(threshold)} train accuracy (every run reached it)", fontsize=9)


def _fig1b_target(ax: Axes, f1: pd.DataFrame, df: pd.DataFrame) -> None:
    """The time to the target: censored means are open upward triangles (>=, lower bounds), and a line
    joins only neighbouring points that are both data (a censored point breaks it)."""
    drawable = f1.dropna(subset=["relative_time"])
    for model in FIG1_MODELS:
        g = drawable[drawable["model"] == model]
        if g.empty:
            continue
        color = MODEL_COLORS[model]
        ax.plot(g["level"], g["relative_time"].where(~g["censored"]), "-", color=color, label=model_label(model, df))
        fit, cens = g[~g["censored"]], g[g["censored"]]
        ax.plot(fit["level"], fit["relative_time"], "o", color=color, zorder=3)
        ax.plot(cens["level"], cens["relative_time"], "^", ms=10, mfc="white", color=color, zorder=2)
    legend_proxy(ax, "o", "reached the target", ls="none")
    if drawable["censored"].any():
        legend_proxy(ax, "^", ">= lower bound: the run(s) ended before reaching the target", ms=10, mfc="white", ls="none")
    no_ratio = sorted(set(f1.loc[f1["p0_censored"], "model"]) - set(drawable["model"]))
    note = f"\nnot drawn: {', '.join(no_ratio)} (p = 0 never reached the target: no ratio)" if no_ratio else ""
    ax.set_title(f"to {target_label(f1)} train accuracy (the target){note}", fontsize=9)


def fig1b(f1: pd.DataFrame, df: pd.DataFrame) -> Figure | None:
    """Time to overfit relative to p = 0 against label corruption p, to the fit target (censored values as
    open triangles); beside it, where some run never reached the target, to the highest threshold that
    every run of the figure reached (`fig1_frame`'s `threshold`), where no point is a lower bound."""
    df, threshold = fig1_runs(df), common_threshold(f1)
    if f1["relative_time"].isna().all() and threshold is None:
        return None
    fig, axes = subplots(1, 1 if threshold is None else 2, figsize=(6.5 if threshold is None else 11, 4.8),
                             squeeze=False)
    if threshold is not None:
        _fig1b_common(axes[0][0], f1, df, threshold)
    _fig1b_target(axes[0][-1], f1, df)
    for ax in axes[0]:
        ax.set(xlabel="label corruption p", ylabel="time to overfit / time at p = 0")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(figure_title("Fig. 1b: time to overfit vs label noise", df), fontsize=10)
    fig.tight_layout(rect=(0, shared_legend(fig, axes[0], ncol=3 if threshold is not None else 2), 1, 1))
    return fig


def fig1c(f1: pd.DataFrame, df: pd.DataFrame) -> Figure | None:
    """Test error against label corruption p, the paper's p = 0 values as their own markers, and chance."""
    if f1.empty:
        return None
    df = fig1_runs(df)
    fig, ax = _fig1_axes("Fig. 1c: test error vs label noise", df)
    unfit = False
    for model in FIG1_MODELS:
        g = f1[f1["model"] == model]
        if g.empty:
            continue
        line, = ax.plot(g["level"], g["test_error"], "o-", color=MODEL_COLORS[model], label=model_label(model, df))
        partial = g[g["fit"] < g["runs"]]
        ax.plot(partial["level"], partial["test_error"], "o", mfc="white", color=line.get_color())
        ax.plot([0], [PAPER_FIG1C_P0[model]], "x", ms=9, mew=2, color=line.get_color())
        unfit |= not partial.empty
    legend_proxy(ax, "x", "paper, p = 0 (read off its Fig. 1c)", ms=9, mew=2, ls="none")
    if unfit:
        legend_proxy(ax, "o", "hollow: not all runs reached the target", mfc="white", ls="none")
    plots.chance_line(ax, 1 - 1 / NUM_CLASSES, f"{NUM_CLASSES} classes")
    ax.set(xlabel="label corruption p", ylabel="test error", ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def fig1a(df: pd.DataFrame, uri: str) -> Figure | None:
    """Inception's training loss per step for the five randomization tests (one seed each)."""
    curves = []
    for kind, level, label in FIG1A_CURVES:
        sel = select(df, "inception", False, False, False, kind, level).sort_values("seed")
        h = history(uri, sel.iloc[0]["run_id"], "train/loss") if len(sel) else pd.DataFrame()
        if not h.empty:
            curves.append((label, h, sel.iloc[:1]))
    if not curves:
        return None
    div, xlabel = plots.step_axis(max(h["step"].max() for _, h, _ in curves))
    fig, ax = subplots(figsize=(6, 4.2))
    for label, h, _ in curves:
        ax.plot(h["step"] / div, h["value"], label=label)
    plots.chance_line(ax, math.log(NUM_CLASSES), f"uniform prediction, ln {NUM_CLASSES}")
    drawn = pd.concat([runs for _, _, runs in curves])
    ax.set_title(figure_title("Fig. 1a: Inception, randomization tests", drawn), fontsize=9.5)
    ax.set(xlabel=xlabel, ylabel="training loss (mean over epoch)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


GAIN_LABEL = "cumulative best test accuracy (shaded: what early stopping gains)"


def _fig2b_panel(ax: Axes, run: pd.Series, tr: pd.DataFrame, te: pd.DataFrame, div: float, xlabel: str) -> None:
    """Train and test accuracy of one run; shaded: what early stopping at the best test accuracy gains. A run
    that never reached its fit target never fitted its training set (or never left chance): the best-minus-final
    test accuracy of a run still learning is no early-stopping gain, so it gets no band, and its title says so."""
    ax.plot(tr["step"] / div, 100 * tr["value"], label="train accuracy")
    ax.plot(te["step"] / div, 100 * te["value"], label="test accuracy")
    if pd.isna(run["fit_step"]):
        note = f"never fitted (best train accuracy {100 * tr['value'].max():.1f} %): no gain drawn"
    else:
        best = te["value"].cummax()
        ax.fill_between(te["step"] / div, 100 * te["value"], 100 * best, color="C1", alpha=0.25, label=GAIN_LABEL)
        note = f"early-stopping gain {100 * (best.iloc[-1] - te['value'].iloc[-1]):.2f} pts"
    plots.chance_line(ax, 100 / NUM_CLASSES, f"{NUM_CLASSES} classes")
    name = run["model"] if run["model"] == "inception" else f"{run['model']} (no BatchNorm)"
    ax.set(xlabel=xlabel, ylim=(0, 100))
    ax.set_title(f"{name}\n{note}", fontsize=9)
    ax.grid(alpha=0.3)


def fig2b(df: pd.DataFrame, uri: str) -> Figure | None:
    """Inception with/without BN: train and test accuracy per step, one panel per model that has a run."""
    panels = []
    for model in ("inception", "inception_nobn"):
        sel = select(df, model, False, False, False, "labels", 0.0).sort_values("seed")
        if len(sel):
            tr, te = history(uri, sel.iloc[0]["run_id"], "train/acc"), history(uri, sel.iloc[0]["run_id"], "test/acc")
            if not tr.empty and not te.empty:
                panels.append((sel.iloc[0], tr, te))
    if not panels:
        return None
    div, xlabel = plots.step_axis(max(max(tr["step"].max(), te["step"].max()) for _, tr, te in panels))
    fig, axes = subplots(1, len(panels), figsize=(max(6.5, 5 * len(panels)), 4.6), sharey=True, squeeze=False)
    for ax, (run, tr, te) in zip(axes[0], panels, strict=True):
        _fig2b_panel(ax, run, tr, te, div, xlabel)
    axes[0][0].set_ylabel("accuracy (%)")
    drawn = pd.DataFrame([run for run, _, _ in panels])
    fig.suptitle(figure_title("Fig. 2b: BatchNorm and early stopping (no explicit regularizer)", drawn), fontsize=10)
    fig.tight_layout(rect=(0, shared_legend(fig, axes[0]), 1, 1))
    return fig


def save_figures(figures: dict[str, Figure | None], out: Path) -> dict[str, list[Path]]:
    """Every figure that was drawn (None: no data), written as PNG + PDF and closed; {name: paths}."""
    written = {}
    for name, fig in figures.items():
        if fig is not None:
            written[name] = plots.save(fig, out / name)
            plots.close(fig)
    return written
