"""Time to overfit (Fig. 1b): the first step at which a run's training accuracy (full training set, eval
mode) reached a threshold, and the threshold that every run of the figure reached.

A run that never reaches the fit target (`trainer.target_train_acc`, 0.999 in the presets) is censored: its
time is only a lower bound. At the paper's scale most label-noise runs of the MLP never reach 99.9 %, so
Fig. 1b also shows the time to the highest of `CANDIDATES` that every run reached: a version without
lower bounds. The step comes from the run's summary metric where one is logged (`steps_to_99`, ...: see
`rethink.jobs.training.summary_metrics`), otherwise from its `train/acc` history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import pandas as pd

from rethink.report.runs import history

# The thresholds tried below the target, highest first (99 % is a summary metric of every run since
# progress.FIT_THRESHOLDS; the lower ones are read from the train/acc history).
CANDIDATES = (0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.5)

Curve = Callable[[str], pd.DataFrame]  # run id -> its train/acc history (`step`, `value`)


def percent(threshold: float) -> str:
    """`99.9 %` for 0.999: a threshold as the figures and tables write it."""
    return f"{100 * threshold:.4g} %"


def summary_key(threshold: float) -> str:
    """The summary metric of the steps to `threshold` (`steps_to_99_9` for 0.999), named as job.summary_metrics does."""
    return "steps_to_" + f"{threshold * 100:g}".replace(".", "_")


def first_step(curve: pd.DataFrame, threshold: float) -> float:
    """The first logged step whose value is at least `threshold` (as the stopping rule compares); NaN if none."""
    hit = curve.loc[curve["value"] >= threshold, "step"] if len(curve) else pd.Series(dtype=float)
    return float(hit.min()) if len(hit) else math.nan


def steps_to(runs: pd.DataFrame, threshold: float, curve: Curve | None) -> pd.Series:
    """Per run, the step it first reached `threshold`: its summary metric where logged, else its `curve`
    (NaN without one: a run whose history is not read counts as not known to have reached it)."""
    key = summary_key(threshold)
    logged = runs[key] if key in runs else pd.Series(math.nan, index=runs.index)
    if curve is None:
        return logged.astype(float)
    return pd.Series([s if not pd.isna(s) else first_step(curve(r), threshold)
                      for r, s in zip(runs["run_id"], logged, strict=True)], index=runs.index, dtype=float)


def train_acc_curves(uri: str) -> Curve:
    """A reader of runs' `train/acc` histories from the store at `uri`, each read at most once."""
    return cache(lambda run_id: history(uri, run_id, "train/acc"))


def common_threshold(runs: pd.DataFrame, curve: Curve | None) -> tuple[float | None, pd.Series]:
    """The highest of `CANDIDATES` below every run's target that every run reached, and each run's step to
    it; (None, empty) when there is no such threshold (or no run)."""
    targets = runs["target"].dropna()
    below = min(targets) if len(targets) else 1.0
    for threshold in (t for t in CANDIDATES if t < below) if len(runs) else ():
        steps = steps_to(runs, threshold, curve)
        if steps.notna().all():
            return threshold, steps
    return None, pd.Series(dtype=float)
