"""Figures shared by jobs (learning-curve artifact) and the report, and the conventions they share:
the step axis, the chance line, the subtitle naming scale and data size, PNG + PDF output."""

from __future__ import annotations

import math
import threading
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

# From this many steps on, an axis in thousands of steps reads well (ticks 0..5 and up); below, the
# thousands would be fractions (0.1, 0.2, ...), so the axis stays in plain steps.
THOUSANDS_FROM = 5000
FORMATS = ("png", "pdf")  # every figure is written as both: PNG for the README, PDF to publish
# matplotlib is not thread-safe (its text layout and mathtext caches): the jobs of a pack, each in its own
# thread (rethink.training.pack), draw and save their figures one at a time under this lock.
DRAWING = threading.Lock()


def subplots(nrows: int = 1, ncols: int = 1, **kw):
    """A new figure and its axes, as `pyplot.subplots` makes them, without pyplot: no GUI backend, no global figure
    registry (nothing to close in a process that draws many), and a faster import."""
    fig = Figure(figsize=kw.pop("figsize", None), layout=kw.pop("layout", None))
    return fig, fig.subplots(nrows, ncols, **kw)


def step_axis(max_step: float) -> tuple[float, str]:
    """(divisor, x label) for an axis of SGD steps: thousands only where the steps run that high."""
    if max_step >= THOUSANDS_FROM:
        return 1000.0, "thousands of SGD steps"
    return 1.0, "SGD steps"


def chance_line(ax: Axes, y: float, what: str = "") -> None:
    """A dotted horizontal line at the chance level, labelled `chance` (plus `what`) in the legend."""
    ax.axhline(y, color="0.35", ls=":", lw=1.2, label="chance" + (f" ({what})" if what else ""), zorder=0)


def subtitle(scale: str | None = None, train_size: int | None = None) -> str:
    """`scale=cpu, 20,000 training images` (the parts known; empty if neither)."""
    parts = [f"scale={scale}"] if scale else []
    if train_size is not None and not (isinstance(train_size, float) and math.isnan(train_size)):
        parts.append(f"{int(train_size):,} training images")
    return ", ".join(parts)


def with_subtitle(title: str, scale: str | None = None, train_size: int | None = None) -> str:
    """`title — scale=..., N training images`, or `title` alone where neither is known."""
    sub = subtitle(scale, train_size)
    return f"{title} — {sub}" if sub else title


def save(fig: Figure, stem: Path, dpi: int = 150) -> list[Path]:
    """Write `fig` as stem.png and stem.pdf; return the paths."""
    paths = [stem.with_suffix(f".{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return paths


def _series(history: list[dict], key: str, scale: float = 1.0) -> list[float] | None:
    """`key` of every history row (times `scale`), or None where the rows do not all have it."""
    if not all(key in h for h in history):
        return None
    return [scale * h[key] for h in history]


def learning_curve(history: list[dict], title: str, *, scale: str | None = None,
                   train_size: int | None = None, num_classes: int | None = None) -> Figure:
    """Training loss, and train/test accuracy, against SGD steps; with `num_classes`, the chance levels."""
    div, xlabel = step_axis(max((h["step"] for h in history), default=0))
    steps = [h["step"] / div for h in history]
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train/loss", "train loss (running)"), ("test/loss", "test loss")):
        if (ys := _series(history, key)) is not None:
            ax_loss.plot(steps, ys, label=label)
    if num_classes:
        chance_line(ax_loss, math.log(num_classes), f"uniform prediction, ln {num_classes}")
    ax_loss.set(xlabel=xlabel, ylabel="cross-entropy loss", yscale="log", title="loss")
    for key, style, label in (("train/acc", "-", "train accuracy (eval mode)"), ("test/acc", "-", "test accuracy"),
                              ("train/acc_clean", ":", "train, clean subset"),
                              ("train/acc_corrupted", ":", "train, corrupted subset")):
        if (ys := _series(history, key, 100.0)) is not None:
            ax_acc.plot(steps, ys, style, label=label)
    if num_classes:
        chance_line(ax_acc, 100.0 / num_classes, f"{num_classes} classes")
    ax_acc.set(xlabel=xlabel, ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(with_subtitle(title, scale, train_size))
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Free a figure's memory at once (many jobs run in one process)."""
    fig.clear()
