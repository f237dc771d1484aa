"""A finished training's outcome as the run records it: the summary metrics, the result table of its description,
and the check that its per-epoch history is complete in the store before it may end FINISHED."""

from __future__ import annotations

import math

from rethink.errors import IncompleteRunError
from rethink.jobs.epoch_table import duration
from rethink.run import open_run
from rethink.training.progress import FIT_THRESHOLDS, TrainResult


def summary_metrics(result: TrainResult) -> dict[str, float]:
    """A finished training's summary: epochs, steps, the fit, the steps to 99 % / 99.9 %, and the best
    test accuracy along the way (with its step, and best - final: what early stopping would gain)."""
    out: dict[str, float] = {"epochs": result.epochs, "steps": result.steps, "images_per_s": result.images_per_s}
    tested = [h for h in result.history if "test/acc" in h]
    if tested:
        best = max(tested, key=lambda h: h["test/acc"])
        out |= {"best_test_acc": best["test/acc"], "best_test_acc_step": best["step"],
                "early_stopping_gain": round(best["test/acc"] - tested[-1]["test/acc"], 12)}
        if "test/top5" in best:  # ImageNet: the paper's parentheses give the best top-5 too
            out["best_test_top5"] = max(h["test/top5"] for h in tested)
    if result.fit_epoch is not None:
        out |= {"fit_epoch": result.fit_epoch, "fit_step": result.fit_step}
    for thr in FIT_THRESHOLDS:
        if thr in result.reached:
            tag = f"{thr * 100:g}".replace(".", "_")
            out |= {f"epochs_to_{tag}": result.reached[thr][0], f"steps_to_{tag}": result.reached[thr][1]}
    return out


def results_table(last: dict, final: dict, stop_reason: str) -> str:
    """The run's outcome as a small Markdown table (the run page shows its description rendered)."""
    fit = f"epoch {final['fit_epoch']:.0f} (step {final['fit_step']:.0f})" if "fit_epoch" in final else "not reached"
    rows = [("train accuracy", f"{100 * last['train/acc']:.2f} %"), ("test accuracy", f"{100 * last['test/acc']:.2f} %"),
            ("generalization gap", f"{100 * last['generalization_gap']:.2f} points"), ("target train accuracy reached", fit),
            ("stopped", f"{stop_reason} after {final['epochs']:.0f} epochs, {final['steps']:.0f} steps"),
            ("wall time", duration(final["wall_time"]))]
    return "| result | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def check_complete(job: open_run.JobRun, history: list[dict]) -> None:
    """Refuse to finish a run whose per-epoch metrics have gaps in the store (a FINISHED run is a
    promise that its history is complete)."""
    expected: dict[str, list[int]] = {}
    for h in history:
        for k, v in h.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                expected.setdefault(k, []).append(h["step"])
    if missing := job.missing_steps(expected):
        key, steps = next(iter(missing.items()))
        raise IncompleteRunError(f"{sum(map(len, missing.values()))} metric values missing from the store "
                                 f"(e.g. {key} at steps {steps[:5]}): the run cannot end FINISHED")
