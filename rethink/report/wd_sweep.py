"""The `wd_sweep` preset, an extension not in the paper: random labels with weight decay at several
coefficients for AlexNet and MLP 1x512 -> does training still fit them? One table (Markdown + CSV)
and one figure, made only where the runs used hold two coefficients or more for a model."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from rethink import plots
from rethink.plots import subplots
from rethink.report.figures import MODEL_COLORS, figure_title, legend_proxy, model_label
from rethink.report.paper import NUM_CLASSES, PAPER_WD_ALEXNET
from rethink.report.tables import fmt, markdown
from rethink.run.record import DEFAULT_WD

MODELS = ("alexnet", "mlp_1x512")
COLUMNS = ["model", "weight_decay", "runs", "fit", "train_acc", "train_std", "test_acc", "test_std", "stop_reason"]
CAPTION = (
    "Random labels (p = 1) with weight decay at several coefficients: an extension, not in the paper. "
    f"The paper says {PAPER_WD_ALEXNET}; our Table 4 uses {DEFAULT_WD:g}, the TensorFlow tutorial this AlexNet comes "
    "from 0.004. Train/test accuracy (%) is the last epoch's (mean ± std over seeds); `fitted`: whether the runs "
    "reached the target training accuracy; `stopped`: why they ended.")


def sweep_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs it reads: AlexNet or MLP 1x512, every label random (p = 1), weight decay > 0, nothing else."""
    if df.empty:
        return df
    return df[df["model"].isin(MODELS) & (df["kind"] == "labels") & ((df["level"] - 1.0).abs() < 1e-9)
              & (df["weight_decay"] > 0) & ~df["crop"] & ~df["flip"] & ~df["rotate"] & ~df["dropout"]]


def _reasons(s: pd.Series) -> str:
    """`target`, or `max_epochs x2, target` where the runs of one point stopped for different reasons."""
    counts = s.fillna("not recorded").astype(str).value_counts()
    return ", ".join(why if n == 1 else f"{why} x{n}" for why, n in sorted(counts.items()))


def sweep_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per model and coefficient: runs, how many fitted, mean/std train and test accuracy, why they stopped.

    Empty unless some model has runs at two coefficients or more (one point is Table 4's row, not a sweep).
    """
    sel = sweep_runs(df)
    if sel.empty or sel.groupby("model")["weight_decay"].nunique().max() < 2:
        return pd.DataFrame(columns=COLUMNS)
    return (sel.groupby(["model", "weight_decay"])
               .agg(runs=("run_id", "count"), fit=("fit_step", "count"), train_acc=("train_acc", "mean"),
                    train_std=("train_acc", "std"), test_acc=("test_acc", "mean"), test_std=("test_acc", "std"),
                    stop_reason=("stop_reason", _reasons))
               .reset_index()[COLUMNS])


def _fitted(fit: int, runs: int) -> str:
    """`yes`, `no`, or `1/2` where only some seeds reached the target."""
    return "yes" if fit == runs else "no" if fit == 0 else f"{fit}/{runs}"


def sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The sweep as the README shows it: accuracies in %, fitted yes/no (or k/n over seeds)."""
    rows = [{"model": r.model, "weight decay": f"{r.weight_decay:g}", "runs": r.runs,
             "train acc (%)": fmt(100 * r.train_acc, 100 * r.train_std, r.runs),
             "test acc (%)": fmt(100 * r.test_acc, 100 * r.test_std, r.runs),
             "fitted": _fitted(r.fit, r.runs), "stopped": r.stop_reason} for r in frame.itertuples()]
    return pd.DataFrame(rows, columns=["model", "weight decay", "runs", "train acc (%)", "test acc (%)", "fitted",
                                       "stopped"])


def sweep_markdown(frame: pd.DataFrame) -> str:
    """The caption, then the table: what `wd_sweep.md` and the README's section hold."""
    return CAPTION + "\n\n" + markdown(sweep_table(frame))


def sweep_figure(frame: pd.DataFrame, df: pd.DataFrame) -> Figure | None:
    """Final train accuracy against the coefficient (log x), one line per model; filled: fitted, open: not."""
    if frame.empty:
        return None
    runs = sweep_runs(df)
    fig, ax = subplots(figsize=(6, 4.2))
    for model in MODELS:
        g = frame[frame["model"] == model].sort_values("weight_decay")
        if g.empty:
            continue
        color, fit = MODEL_COLORS[model], g["fit"] == g["runs"]
        ax.plot(g["weight_decay"], 100 * g["train_acc"], "-", color=color, label=model_label(model, runs))
        ax.plot(g.loc[fit, "weight_decay"], 100 * g.loc[fit, "train_acc"], "o", ms=7, color=color)
        ax.plot(g.loc[~fit, "weight_decay"], 100 * g.loc[~fit, "train_acc"], "o", ms=7, mfc="white", color=color)
    legend_proxy(ax, "o", "filled: reached the target", ls="none")
    if (frame["fit"] < frame["runs"]).any():
        legend_proxy(ax, "o", "open: not all runs reached the target", mfc="white", ls="none")
    targets = runs["target"].dropna().unique()
    if len(targets) == 1:
        ax.axhline(100 * targets[0], color="0.5", ls="--", lw=1, label=f"target ({100 * targets[0]:g} %)", zorder=0)
    plots.chance_line(ax, 100 / NUM_CLASSES, f"{NUM_CLASSES} classes")
    coefs = sorted(frame["weight_decay"].unique())
    ax.set_xscale("log")
    ax.set_xticks(coefs, [f"{c:g}" for c in coefs])
    ax.minorticks_off()
    ax.set(xlabel="weight decay coefficient (log scale)", ylabel="final train accuracy (%), random labels",
           ylim=(0, 102))
    ax.set_title(figure_title("Weight decay vs fitting random labels (extension)", runs), fontsize=9.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
