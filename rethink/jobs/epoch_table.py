"""The per-epoch table a training job prints: a fixed-width row per epoch (airbench's habit), with the job's ETA."""

from __future__ import annotations

# (key of the row, header, format). `epoch` reads N/max; `eta` is the time left to max_epochs at the mean epoch
# time so far (an upper bound when the job stops at the target).
COLUMNS = [("epoch", "epoch", "{:>9}"), ("step", "step", "{:>7d}"), ("lr", "lr", "{:>8.5f}"),
           ("train/loss", "loss", "{:>8.4f}"), ("train/acc", "train_acc", "{:>9.4f}"),
           ("test/acc", "test_acc", "{:>8.4f}"), ("generalization_gap", "gap", "{:>7.4f}"),
           ("epoch_time", "sec", "{:>6.2f}"), ("eta", "eta", "{:>8}")]


def duration(seconds: float) -> str:
    """E.g. `42s`, `3m05s`, `1h02m`: short enough for a table column."""
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def header() -> str:
    """The table's header line, each title as wide as its column."""
    return " ".join(f"{{:>{len(f.format('' if 'd' not in f and 'f' not in f else 0))}}}".format(h) for _, h, f in COLUMNS)


class EpochTable:
    """Rows of one job's training: each epoch's statistics with `epoch N/max` and the ETA to `max_epochs`."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.times: list[float] = []

    def row(self, stats: dict) -> str:
        """The line of one epoch (`stats` as the loops record them)."""
        self.times.append(stats["epoch_time"])
        left = self.max_epochs - stats["epoch"]
        row = stats | {"epoch": f"{stats['epoch']}/{self.max_epochs}",
                       "eta": duration(left * sum(self.times) / len(self.times)) if left else "-"}
        return " ".join(f.format(row[k]) for k, _, f in COLUMNS)
