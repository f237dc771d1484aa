"""Figures shared by jobs (learning-curve artifact) and the report."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curve(history: list[dict], title: str) -> Figure:
    """Training loss, and train/test accuracy, against thousands of SGD steps."""
    steps = [h["step"] / 1000 for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(steps, [h["train/loss"] for h in history], label="train loss (running)")
    ax_loss.plot(steps, [h["test/loss"] for h in history], label="test loss")
    ax_loss.set(xlabel="thousands of steps", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.plot(steps, [100 * h["train/acc"] for h in history], label="train accuracy (eval mode)")
    ax_acc.plot(steps, [100 * h["test/acc"] for h in history], label="test accuracy")
    if "train/acc_clean" in history[0]:
        ax_acc.plot(steps, [100 * h["train/acc_clean"] for h in history], ":", label="train, clean subset")
    if "train/acc_corrupted" in history[0]:
        ax_acc.plot(steps, [100 * h["train/acc_corrupted"] for h in history], ":", label="train, corrupted subset")
    ax_acc.set(xlabel="thousands of steps", ylabel="accuracy (%)", ylim=(0, 100), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Free a figure's memory (many jobs run in one process)."""
    plt.close(fig)
