"""The ImageNet half of the paper: Table 2 (Inception v3, top-1/top-5 train and test accuracy with data
augmentation, dropout and weight decay on or off, true and random labels) and Fig. 2a (top-1 train and test
accuracy along training per regularizer setting), the paper's numbers beside ours, and its README section.

Reads only the ImageNet Inception v3 runs among the runs used (`runs.imagenet_runs`: params
`dataset.name` = imagenet, `model.name` = inception_v3) and matches them to the paper's rows by their params:
`regularizer.random_crop` and `regularizer.flip` (both on: the paper's data augmentation, random-resized crop +
flip; both off: none), `regularizer.dropout` (> 0: on), `regularizer.weight_decay` (IMAGENET_WD: on, 0: off),
`corruption.kind` = labels at `corruption.level` 0 (true) or 1 (random labels). Its numbers are the summary
metrics of search_runs: the last logged `train/acc`, `train/top5`, `test/acc`, `test/top5` and the best along
training, `best_test_acc`, `best_test_top5` (`with_best` takes the maximum of the `test/acc` / `test/top5`
history of a run that lacks them); Fig. 2a reads the histories of `train/acc` and `test/acc`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from rethink.plots import subplots
from rethink.report.deviations import budget, grouped, precision
from rethink.report.figures import figure_title, legend_proxy
from rethink.report.paper import IMAGENET_CLASSES, IMAGENET_WD, PAPER_TABLE2
from rethink.report.runs import history, imagenet_runs, is_missing
from rethink.report.tables import fmt, markdown

# (our column in the runs frame, our best-along-training column or None, the table's name for it)
METRICS = [("train_acc", None, "top-1 train"), ("train_top5", None, "top-5 train"),
           ("test_acc", "best_test_acc", "top-1 test"), ("test_top5", "best_test_top5", "top-5 test")]
NAN = float("nan")
SETTING_COLUMNS = ["labels", "aug", "dropout", "weight decay", "runs"]
FRAME_COLUMNS = SETTING_COLUMNS + [c for _, best, name in METRICS for c in (
    [f"{name} (ours)", f"{name} std"] + ([f"best {name} (ours)"] if best else [])
    + [f"{name} (paper)"] + ([f"best {name} (paper)"] if best else []))]
TABLE2_NOTE = (
    "Inception v3 on ImageNet (the paper's Table 2): top-1 and top-5 accuracy (%) with data augmentation (`aug`: "
    "random-resized crop + left-right flip), dropout and weight decay on or off, for true and random labels. "
    "`(ours)`: the last evaluation of each run, the mean (± std) over the `runs` of a row (seeds); in parentheses "
    "the best test accuracy along training (mean over the runs), what early stopping at the best epoch would give; "
    "the paper gives that number for some rows (\"a reference for potential performance gain of early "
    "stopping\"). `—`: no run of that row. Our train accuracy is measured on a fixed subset of the training set "
    "in eval mode (no augmentation, no dropout) against the run's own (possibly random) labels; the paper's train "
    "numbers are those of its TensorFlow training, whose measurement it does not describe. With random labels the "
    f"test accuracy's chance level is {100 / IMAGENET_CLASSES:g} % top-1, {500 / IMAGENET_CLASSES:g} % top-5.\n\n")
FIG2A_CAPTION = (
    "Fig. 2a: Inception v3 on ImageNet, true labels: top-1 accuracy per step for each regularizer setting of "
    "Table 2 that has a run (the lowest seed); solid: train (a fixed subset of the training set, eval mode), "
    "dashed: test (the validation set); shaded: the cumulative best test accuracy above the current one, what "
    "early stopping could gain.")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def setting(aug: bool, dropout: bool, wd: bool) -> str:
    """`aug, dropout, wd` (the regularizers on), or `no regularizer`."""
    on = [name for name, flag in (("aug", aug), ("dropout", dropout), ("wd", wd)) if flag]
    return ", ".join(on) or "no regularizer"


def select(df: pd.DataFrame, aug: bool, dropout: bool, wd: bool, random: bool) -> pd.DataFrame:
    """The runs of one Table 2 row, matched by params: ImageNet Inception v3, augmentation (crop and flip both on
    or both off, no rotation), dropout, weight decay (the presets' IMAGENET_WD, or none), true or random labels."""
    df = imagenet_runs(df)
    if df.empty:
        return df
    wd_ok = (df["weight_decay"] - IMAGENET_WD).abs() < 1e-12 if wd else ~df["wd"]
    return df[(df["crop"] == aug) & (df["flip"] == aug) & ~df["rotate"] & (df["dropout"] == dropout) & wd_ok
              & (df["kind"] == "labels") & ((df["level"] - (1.0 if random else 0.0)).abs() < 1e-9)]


def with_best(df: pd.DataFrame, uri: str) -> pd.DataFrame:
    """The runs, with `best_test_acc` / `best_test_top5` taken from the run's `test/acc` / `test/top5` history
    where the summary metric is missing (a run recorded before it was logged)."""
    df = df.copy()
    for best, key in (("best_test_acc", "test/acc"), ("best_test_top5", "test/top5")):
        for i in df.index[df[best].isna()]:
            h = history(uri, df.at[i, "run_id"], key)
            df.at[i, best] = h["value"].max() if len(h) else NAN
    return df


def table2_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as numbers (%), one row per paper row: per metric our mean and std over the runs, our mean best
    test along training, and the paper's numbers; NaN where no run matches (what `table2.csv` holds)."""
    rows = []
    for aug, dropout, wd, random, *paper in PAPER_TABLE2:
        sel = select(df, aug, dropout, wd, random)
        paper_final = dict(zip([name for *_, name in METRICS], paper[:4], strict=True))
        paper_best = {"top-1 test": paper[4], "top-5 test": paper[5]}
        row = {"labels": "random" if random else "true", "aug": _yes(aug), "dropout": _yes(dropout),
               "weight decay": _yes(wd), "runs": len(sel)}
        for col, best, name in METRICS:
            ours = 100 * sel[col] if len(sel) else pd.Series(dtype=float)
            row[f"{name} (ours)"], row[f"{name} std"], row[f"{name} (paper)"] = ours.mean(), ours.std(), paper_final[name]
            if best:
                row[f"best {name} (ours)"] = (100 * sel[best]).mean() if len(sel) else NAN
                row[f"best {name} (paper)"] = NAN if paper_best[name] is None else paper_best[name]
        rows.append(row)
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def _cell(final: float, best: float, std: float = NAN, n: int = 1) -> str:
    """`72.95`, `59.80 (63.16)` with the best along training, `60.00 ± 1.41 (63.00)` over several runs, `—`."""
    text = fmt(final, std, n)
    return text if text == "—" or pd.isna(best) else f"{text} ({best:.2f})"


def table2(df: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as the paper lays it out, ours beside the paper's: `final (best along training)` per test
    metric, mean ± std over the runs of a row, `—` where no run matches (what `table2.md` and the README show)."""
    frame = table2_frame(df)
    shown = frame[SETTING_COLUMNS].copy()
    none = pd.Series(NAN, index=frame.index)
    for _, best, name in METRICS:
        ours_best, paper_best = (frame[f"best {name} (ours)"], frame[f"best {name} (paper)"]) if best else (none, none)
        shown[f"{name} (ours)"] = [_cell(*v) for v in zip(frame[f"{name} (ours)"], ours_best, frame[f"{name} std"],
                                                          frame["runs"], strict=True)]
        shown[f"{name} (paper)"] = [_cell(*v) for v in zip(frame[f"{name} (paper)"], paper_best, strict=True)]
    return shown


def table2_markdown(df: pd.DataFrame) -> str:
    """The note, then the table: what `table2.md` holds."""
    return TABLE2_NOTE + markdown(table2(df))


def fig2a(df: pd.DataFrame, uri: str) -> Figure | None:
    """Top-1 train (solid) and test (dashed) accuracy against thousands of steps, one colour per true-label
    setting of Table 2 that has a run (its lowest seed), shaded up to the cumulative best test; None: no run."""
    curves = []
    for i, (aug, dropout, wd, random, *_) in enumerate(row for row in PAPER_TABLE2 if not row[3]):
        sel = select(df, aug, dropout, wd, random).sort_values("seed")
        if sel.empty:
            continue
        run_id = sel.iloc[0]["run_id"]
        tr, te = history(uri, run_id, "train/acc"), history(uri, run_id, "test/acc")
        if not tr.empty and not te.empty:
            curves.append((setting(aug, dropout, wd), f"C{i}", tr, te, sel.iloc[:1]))
    if not curves:
        return None
    fig, ax = subplots(figsize=(7, 4.5))
    for label, color, tr, te, _ in curves:
        x = te["step"] / 1000
        ax.plot(tr["step"] / 1000, 100 * tr["value"], "-", color=color, label=f"train ({label})")
        ax.plot(x, 100 * te["value"], "--", color=color, label=f"test ({label})")
        ax.fill_between(x, 100 * te["value"], 100 * te["value"].cummax(), color=color, alpha=0.2, lw=0)
    legend_proxy(ax, "s", "shaded: cumulative best test", alpha=0.3, ls="none")
    drawn = pd.concat([runs for *_, runs in curves])
    ax.set_title(figure_title("Fig. 2a: Inception v3 on ImageNet, top-1 accuracy", drawn), fontsize=9.5)
    ax.set(xlabel="thousands of training steps", ylabel="top-1 accuracy (%)", ylim=(0, 100))
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="best")
    fig.tight_layout()
    return fig


def _schedule(r) -> str:
    """`rmsprop_tf, LR x0.16 every 30 epochs`: the optimizer and the LR decay of one run."""
    opt = "optimizer not recorded" if is_missing(r.optimizer) else str(r.optimizer)
    if is_missing(r.lr_decay):
        return f"{opt}, LR decay not recorded"
    if not is_missing(r.lr_decay_period) and str(r.lr_decay_period) != "None":
        every = f"every {int(float(r.lr_decay_period)):,} steps"
    else:
        epochs = 1 if is_missing(r.lr_decay_epochs) else int(r.lr_decay_epochs)
        every = "every epoch" if epochs == 1 else f"every {epochs} epochs"
    return f"{opt}, LR x{float(r.lr_decay):g} {every}"


def setup_lines(df: pd.DataFrame) -> str:
    """How the ImageNet runs were set up, read from their params and tags, each value with its number of runs."""
    def per_run(f) -> pd.Series:
        return pd.Series([f(r) for r in df.itertuples()], index=df.index, dtype=object)

    train_eval = per_run(lambda r: "not recorded" if is_missing(r.train_eval_size)
                         else f"{int(r.train_eval_size):,} training images")
    return (f"- **Training budget**: {grouped(budget(df), '; ')}.\n"
            f"- **Train accuracy measured on** (`dataset.train_eval_size`): {grouped(train_eval)}.\n"
            f"- **Optimizer and LR schedule**: {grouped(per_run(_schedule), '; ')}.\n"
            f"- **Device and precision**: {grouped(precision(df), '; ')}.\n")


def section(df: pd.DataFrame) -> str:
    """The README's `Table 2 / Fig. 2a (ImageNet)` section: the runs used and their setup, the note, the table."""
    inet = imagenet_runs(df)
    text = "\n## Table 2 / Fig. 2a (ImageNet)\n\n"
    if inet.empty:
        return text + "No ImageNet run used.\n"
    seeds = sorted(int(s) for s in inet["seed"].dropna().unique())
    scales = sorted(str(s) for s in inet["scale"].dropna().unique())
    text += (f"{len(inet)} ImageNet Inception v3 run(s) used (scale {', '.join(scales) or 'not recorded'}, "
             f"seeds {seeds}). Their setup, read from their params and tags (each value with its number of runs):\n\n"
             + setup_lines(inet) + "\n")
    return text + table2_markdown(inet) + "\nFig. 2a: [below](#fig2a).\n"
