"""The paper's tables from the runs used: Table 1, Table 4 and the Fig. 1b/1c data, our numbers beside
the paper's; runs are matched to rows by their params and repeated seeds averaged (mean ± std)."""

from __future__ import annotations

import pandas as pd

from rethink.report import overfit
from rethink.report.paper import FIG1_MODELS, PAPER_TABLE1, PAPER_TABLE4
from rethink.report.runs import CIFAR
from rethink.run.record import DEFAULT_WD

FIG1_COLUMNS = ["model", "level", "runs", "fit", "test_error", "target", "relative_time", "censored", "p0_censored",
                "time to overfit / p=0", "threshold", "relative_time_at_threshold", "time to threshold / p=0"]


def no_reg(df: pd.DataFrame) -> pd.Series:
    """Runs without any explicit regularizer (no crop, weight decay, flip, rotation or dropout)."""
    return ~df["crop"] & ~df["wd"] & ~df["flip"] & ~df["rotate"] & ~df["dropout"]


def select(df: pd.DataFrame, model: str, crop: bool, wd: bool, flip: bool, kind: str, level: float, *,
           rotate: bool = False) -> pd.DataFrame:
    """The runs of one row of a CIFAR-10 paper table: model, regularizers (never dropout), corruption kind and level.

    Weight decay means the presets' coefficient (DEFAULT_WD): a run at another one is a point of the
    wd_sweep extension, and averaging it into a paper row would mix two experiments.
    """
    if df.empty:
        return df
    wd_ok = (df["weight_decay"] - DEFAULT_WD).abs() < 1e-12 if wd else ~df["wd"]
    return df[(df["dataset"] == CIFAR) & (df["model"] == model)
              & (df["crop"] == crop) & wd_ok & (df["flip"] == flip) & (df["rotate"] == rotate) & ~df["dropout"]
              & (df["kind"] == kind) & ((df["level"] - level).abs() < 1e-9)]


def fmt(mean: float, std: float, n: int) -> str:
    """`52.00 ± 2.83` over several runs, `51.00` for one, `—` for none."""
    if n == 0 or pd.isna(mean):
        return "—"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")


def fitted(sel: pd.DataFrame) -> str:
    """`2/2` when every run reached the target training accuracy; otherwise says that not all did."""
    n, k = len(sel), int(sel["fit_step"].notna().sum()) if len(sel) else 0
    if n == 0:
        return "—"
    return f"{k}/{n}" if k == n else f"{k}/{n} (not all reached the target)"


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1 in the paper's layout: our train/test accuracy (%) beside the paper's, and the difference."""
    rows = []
    for model, crop, wd, random, p_train, p_test in PAPER_TABLE1:
        sel = select(df, model, crop, wd, False, "labels", 1.0 if random else 0.0)
        tr, te = (100 * sel["train_acc"], 100 * sel["test_acc"]) if len(sel) else (pd.Series(), pd.Series())
        rows.append({"model": model + (" (random labels)" if random else ""), "random crop": "yes" if crop else "no",
                     "weight decay": "yes" if wd else "no", "runs": len(sel),
                     "train (ours)": fmt(tr.mean(), tr.std(), len(sel)), "train (paper)": p_train,
                     "test (ours)": fmt(te.mean(), te.std(), len(sel)), "test (paper)": p_test,
                     "test diff": round(te.mean() - p_test, 2) if len(sel) else None, "fitted": fitted(sel)})
    return pd.DataFrame(rows)


TABLE4_NOTE = ("Random labels with an explicit regularizer (the paper's Appendix E). `augment` is the paper's: random "
               "left-right flip and random rotation up to 25 degrees; for it and for random crop the paper raised the LR "
               "decay factor from 0.95 to 0.999 and trained longer (our rows `t4_inception_random_crop`, "
               "`t4_inception_augment` do the same). The paper does not say how it measured these training "
               "accuracies. `train (ours)` is the eval-mode accuracy on the unaugmented training set; "
               "`train, online (ours)`, for the augmented rows, is ours too: the last epoch's mean accuracy over its "
               "minibatches of newly augmented images.\n\n")


def table4(df: pd.DataFrame) -> pd.DataFrame:
    """Table 4: training accuracy (%) on random labels with an explicit regularizer. `augment` is the paper's
    (flip + rotation up to 25 degrees, no crop). For the augmented rows our online accuracy (the mean over the
    last epoch's minibatches of newly augmented images) is given beside our eval-mode one."""
    rows = []
    for model, reg, p_train in PAPER_TABLE4:
        crop, wd, aug = reg == "random_crop", reg == "weight_decay", reg == "augment"
        sel = select(df, model, crop, wd, aug, "labels", 1.0, rotate=aug)
        tr, te = (100 * sel["train_acc"], 100 * sel["test_acc"]) if len(sel) else (pd.Series(), pd.Series())
        online = 100 * sel["running_acc"] if len(sel) else pd.Series()
        rows.append({"model": model, "regularizer": reg, "runs": len(sel), "train (ours)": fmt(tr.mean(), tr.std(), len(sel)),
                     "train, online (ours)": fmt(online.mean(), online.std(), len(sel)) if crop or aug else "",
                     "train (paper)": "fails to converge" if p_train is None else p_train,
                     "test (ours)": fmt(te.mean(), te.std(), len(sel)), "fitted": fitted(sel)})
    return pd.DataFrame(rows)


def _ratio_text(rel: float, censored: bool, p0_censored: bool) -> str:
    """The relative time as the table writes it: `2.00`, `>= 3.79` (a lower bound), or why there is none."""
    if not pd.isna(rel):
        return f">= {rel:.2f}" if censored else f"{rel:.2f}"
    return "p=0 censored" if p0_censored else "no p=0 run"


def _with_baseline(sel: pd.DataFrame) -> pd.DataFrame:
    """Each run with its time to overfit (`overfit_step`, `censored`) relative to the p = 0 run of its model
    and seed (newest one). A censored run's step is a lower bound on its time, so its ratio is a lower bound;
    a censored p = 0 run gives its model/seed no ratio at all (NaN)."""
    base = (sel[sel["level"].abs() < 1e-9].sort_values("start_time").drop_duplicates(["model", "seed"], keep="last")
            [["model", "seed", "overfit_step", "censored"]]
            .rename(columns={"overfit_step": "base_step", "censored": "base_censored"}))
    sel = sel.merge(base, on=["model", "seed"], how="left")
    sel["p0_censored"] = sel["base_censored"].eq(True)
    sel["relative_time"] = (sel["overfit_step"] / sel["base_step"]).where(sel["base_censored"].eq(False))
    return sel


def _ratios(sel: pd.DataFrame, step: pd.Series, censored: pd.Series) -> pd.DataFrame:
    """Per model and level: the mean ratio to p = 0 over the seeds that have one (`relative_time`), whether it
    is a lower bound (`censored`: some of those runs never reached the threshold), and whether the p = 0
    run itself never did (`p0_censored`: no ratio)."""
    sel = _with_baseline(sel.assign(overfit_step=step, censored=censored))
    sel["ratio_censored"] = sel["censored"] & sel["relative_time"].notna()
    return sel.groupby(["model", "level"]).agg(relative_time=("relative_time", "mean"), censored=("ratio_censored", "any"),
                                               p0_censored=("p0_censored", "any"))


def fig1_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs Fig. 1b/1c draw: CIFAR-10, the three models, label corruption, no explicit regularizer."""
    return (df[(df["dataset"] == CIFAR) & df["model"].isin(FIG1_MODELS) & (df["kind"] == "labels") & no_reg(df)]
            if len(df) else df)


def fig1_frame(df: pd.DataFrame, uri: str | None = None) -> pd.DataFrame:
    """Per Fig. 1 model and level p: mean test error, and time to overfit relative to p = 0 (same seed).

    `relative_time`: to the target (`trainer.target_train_acc`), the mean over the seeds that have a ratio;
    `censored`: some of those runs never reached the target, so the mean is a lower bound; `p0_censored`: no
    ratio because p = 0 never did; `fit`: how many of the `runs` reached the target. Where some run is
    censored, `threshold` is the highest of `overfit.CANDIDATES` that every run of the figure reached and
    `relative_time_at_threshold` the ratio to it (never a lower bound); both NaN where none is. With `uri`,
    runs without the threshold's summary metric are read from their `train/acc` history.
    """
    sel = fig1_runs(df)
    if sel.empty:
        return pd.DataFrame(columns=FIG1_COLUMNS)
    target = _ratios(sel, sel["fit_step"].fillna(sel["steps"]), sel["fit_step"].isna())
    threshold, steps = (overfit.common_threshold(sel, overfit.train_acc_curves(uri) if uri else None)
                        if sel["fit_step"].isna().any() else (None, pd.Series(dtype=float)))
    common = (_ratios(sel, steps, pd.Series(False, index=sel.index))["relative_time"] if threshold is not None
              else pd.Series(float("nan"), index=target.index))
    f1 = (sel.groupby(["model", "level"])
             .agg(runs=("run_id", "count"), fit=("fit_step", "count"), test_error=("test_acc", lambda s: 1 - s.mean()),
                  target=("target", "min"))
             .join(target).assign(threshold=threshold, relative_time_at_threshold=common).reset_index())
    f1["time to overfit / p=0"] = [_ratio_text(*t) for t in zip(f1["relative_time"], f1["censored"], f1["p0_censored"], strict=True)]
    f1["time to threshold / p=0"] = ([_ratio_text(r, False, False) for r in f1["relative_time_at_threshold"]]
                                     if threshold is not None else "—")
    return f1[FIG1_COLUMNS]


def target_label(f1: pd.DataFrame) -> str:
    """The fit target of the Fig. 1 runs as the tables and figures write it (`99.9 %`), or `the target`."""
    targets = set(f1["target"].dropna()) if "target" in f1 else set()
    return overfit.percent(targets.pop()) if len(targets) == 1 else "the target"


def common_threshold(f1: pd.DataFrame) -> float | None:
    """The threshold every Fig. 1 run reached, where `fig1_frame` chose one (None: no run censored, or none)."""
    values = f1["threshold"].dropna() if len(f1) else ()
    return float(values.iloc[0]) if len(values) else None


def fig1_table(f1: pd.DataFrame) -> pd.DataFrame:
    """The Fig. 1b/1c data as the README shows it (the CSV keeps every column): the time to the target, `>=`
    where it is a lower bound (a run never reached it), and to the common threshold where there is one."""
    fit = [f"{k}/{n}" for k, n in zip(f1["fit"], f1["runs"], strict=True)]
    table = pd.DataFrame({"model": f1["model"], "p": f1["level"], "runs": f1["runs"], "fitted": fit,
                          "test error": f1["test_error"].round(4),
                          f"time to {target_label(f1)} / p=0" + (" (>=: a lower bound)" if f1["censored"].any() else ""):
                          f1["time to overfit / p=0"]})
    if (threshold := common_threshold(f1)) is not None:
        table[f"time to {overfit.percent(threshold)} / p=0 (every run reached it)"] = f1["time to threshold / p=0"]
    return table


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (tabulate via DataFrame.to_markdown); missing values read `—`."""
    if frame.empty:
        return "(none)\n"
    cells = frame.astype(object).where(frame.notna(), None)
    return cells.to_markdown(index=False, missingval="—", disable_numparse=True) + "\n"
