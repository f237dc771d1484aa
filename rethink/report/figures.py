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
from rethink.report.paper import FIG1_MODELS, FIG1A_CURVES, NUM_CLASSES, PAPER_FIG1C_P0
from rethink.report.runs import train_sizes
from rethink.report.tables import fig1_runs, select
from rethink.run import track

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


def _fig1_axes(title: str, df: pd.DataFrame) -> tuple[Figure, Axes]:
    fig, ax = subplots(figsize=(6, 4.2))
    ax.set_title(figure_title(title, df), fontsize=9.5)
    ax.grid(alpha=0.3)
    return fig, ax


def fig1b(f1: pd.DataFrame, df: pd.DataFrame) -> Figure | None:
    """Time to overfit relative to p = 0 against label corruption p; censored values as upward triangles."""
    drawable, df = f1.dropna(subset=["relative_time"]), fig1_runs(df)
    if drawable.empty:
        return None
    fig, ax = _fig1_axes("Fig. 1b: time to overfit vs label noise", df)
    for model in FIG1_MODELS:
        g = drawable[drawable["model"] == model]
        if g.empty:
            continue
        line, = ax.plot(g["level"], g["relative_time"], "-", color=MODEL_COLORS[model], label=model_label(model, df))
        fit, cens = g[~g["censored"]], g[g["censored"]]
        ax.plot(fit["level"], fit["relative_time"], "o", color=line.get_color())
        ax.plot(cens["level"], cens["relative_time"], "^", ms=10, mfc="white", color=line.get_color())
    legend_proxy(ax, "o", "reached the target")
    if drawable["censored"].any():
        legend_proxy(ax, "^", "lower bound: run(s) stopped before the target", ms=10, mfc="white")
    no_ratio = sorted(set(f1.loc[f1["p0_censored"], "model"]) - set(drawable["model"]))
    if no_ratio:
        fig.text(0.01, 0.01, f"not drawn: {', '.join(no_ratio)} (its p = 0 run never reached the target: no ratio)",
                 fontsize=7, color="0.3")
    ax.set(xlabel="label corruption p", ylabel="time to overfit / time at p = 0")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.04 if no_ratio else 0, 1, 1))
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


def history(uri: str, run_id: str, key: str) -> pd.DataFrame:
    """One metric's logged values as a frame (`step`, `value`), in step order."""
    hist = track.metric_history(uri, run_id, key)
    return pd.DataFrame({"step": [s for s, _ in hist], "value": [v for _, v in hist]}).sort_values("step")


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


def _fig2b_panel(ax: Axes, model: str, tr: pd.DataFrame, te: pd.DataFrame, div: float, xlabel: str) -> None:
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


def fig2b(df: pd.DataFrame, uri: str) -> Figure | None:
    """Inception with/without BN: train and test accuracy per step, one panel per model that has a run."""
    panels = []
    for model in ("inception", "inception_nobn"):
        sel = select(df, model, False, False, False, "labels", 0.0).sort_values("seed")
        if len(sel):
            tr, te = history(uri, sel.iloc[0]["run_id"], "train/acc"), history(uri, sel.iloc[0]["run_id"], "test/acc")
            if not tr.empty and not te.empty:
                panels.append((model, tr, te, sel.iloc[:1]))
    if not panels:
        return None
    div, xlabel = plots.step_axis(max(max(tr["step"].max(), te["step"].max()) for _, tr, te, _ in panels))
    fig, axes = subplots(1, len(panels), figsize=(max(6.5, 5 * len(panels)), 4), sharey=True, squeeze=False)
    for ax, (model, tr, te, _) in zip(axes[0], panels, strict=True):
        _fig2b_panel(ax, model, tr, te, div, xlabel)
    axes[0][0].set_ylabel("accuracy (%)")
    drawn = pd.concat([runs for *_, runs in panels])
    fig.suptitle(figure_title("Fig. 2b: BatchNorm and early stopping (no explicit regularizer)", drawn), fontsize=10)
    fig.tight_layout()
    return fig



def save_figures(figures: dict[str, Figure | None], out: Path) -> dict[str, list[Path]]:
    """Every figure that was drawn (None: no data), written as PNG + PDF and closed; {name: paths}."""
    written = {}
    for name, fig in figures.items():
        if fig is not None:
            written[name] = plots.save(fig, out / name)
            plots.close(fig)
    return written
