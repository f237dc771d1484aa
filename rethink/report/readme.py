"""The report folder's README text: the head (runs used, stopping rule, accuracies, the deviations from
the paper's setup, where our numbers differ), the figure captions, and the runs not used with their reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rethink.report import overfit
from rethink.report.deviations import deviations_section
from rethink.report.imagenet import FIG2A_CAPTION
from rethink.report.paper import NUM_CLASSES
from rethink.report.tables import common_threshold, markdown, no_reg, target_label

NEARLY_CONSTANT = 0.9  # a run whose LR at its last step is still above this share of its start barely decayed

CAPTIONS = {
    "fig1a": "Inception's training loss under the five randomization tests (one seed each); dotted: a uniform "
             "prediction's loss.",
    "fig1b": "Time to overfit (first step with train accuracy >= a threshold) relative to p = 0, same model and seed. "
             "Right (or alone): to the fit target; open triangles are lower bounds (>=: a run that ended before the "
             "target is counted at its last step), and no line joins them. Left, where some run never reached the "
             "target: to the highest threshold that every run of the figure reached, where every point is data.",
    "fig1c": "Test error at the end of training; x: the paper's p = 0 values (read off its figure); dotted: chance. "
             "Hollow points: not all runs reached the target.",
    "fig2a": FIG2A_CAPTION,
    "fig2b": "Train and test accuracy per step; shaded: what stopping at the best test accuracy would gain (drawn "
             "only for a run that reached its fit target: a run that never fitted is still learning).",
    "wd_sweep": "An extension, not in the paper: final training accuracy on random labels against the weight decay "
                "coefficient (log scale), one line per model; filled: every run reached the target, open: not all "
                "did; dashed: the target; dotted: chance. Data: the weight decay sweep table above.",
}


def _unfit_line(df: pd.DataFrame) -> str | None:
    """The README's line on runs that never reached the target, or None if all did."""
    unfit = df[df["fit_step"].isna()]
    if unfit.empty:
        return None
    runs = ", ".join(
        f"{r.model}{' +crop' if r.crop else ''}{' +flip' if r.flip else ''}{' +rot' if r.rotate else ''}{' +wd' if r.wd else ''} {r.kind}@{r.level:g} "
        f"(train {100 * r.train_acc:.1f}%, {r.stop_reason} after {r.steps:.0f} steps)" for r in unfit.itertuples())
    reasons = {"max_epochs": "the whole budget ran without reaching the target",
               "stall": "train accuracy stopped improving for `trainer.patience` epochs"}
    why = "".join(f" `{k}`: {v}." for k, v in reasons.items() if (unfit["stop_reason"] == k).any())
    return f"- {len(unfit)} run(s) never reached the target training accuracy: {runs}.{why}"


def overfit_sentence(f1: pd.DataFrame) -> str:
    """What Fig. 1b shows where some of its runs never reached the target: the common threshold, or that there is none."""
    if f1 is None or f1.empty or not (f1["fit"] < f1["runs"]).any():
        return ""
    tried = ", ".join(overfit.percent(t) for t in overfit.CANDIDATES)
    if (threshold := common_threshold(f1)) is None:
        return (f" Some Fig. 1b runs never reached {target_label(f1)}, and no threshold of {tried} was reached by every "
                "run of the figure: Fig. 1b shows the target's version only, with its lower bounds.")
    return (f" Some Fig. 1b runs never reached {target_label(f1)}, so Fig. 1b and its table also give the time to "
            f"**{overfit.percent(threshold)}**, the highest of {tried} that every run of the figure reached: there no "
            "point is a lower bound.")


def _models(names) -> str:
    """`a, b` or `none`."""
    return ", ".join(names) or "none"


def random_label_line(df: pd.DataFrame) -> str | None:
    """Which models fitted random labels (p = 1, no explicit regularizer) in every run, and which did not."""
    rand = df[(df["kind"] == "labels") & ((df["level"] - 1).abs() < 1e-9) & no_reg(df)] if len(df) else df
    if rand.empty:
        return None
    fits = rand.groupby("model")["fit_step"].apply(lambda s: s.notna().all())
    best = rand.groupby("model")["train_acc"].max()
    unfit = [f"{m} (final train accuracy {100 * best[m]:.1f} %)" for m in fits.index[~fits]]
    return (f"- **Random labels (p = 1, no explicit regularizer)** fitted (every run reached the target) by "
            f"{_models(fits.index[fits])}; not by {_models(unfit)}.")


def chance_line(df: pd.DataFrame) -> str | None:
    """Test accuracy on random labels per model, beside chance."""
    rand = df[(df["kind"] == "labels") & ((df["level"] - 1).abs() < 1e-9) & no_reg(df)] if len(df) else df
    if rand.empty:
        return None
    acc = rand.groupby("model")["test_acc"].mean()
    return ("- **Test accuracy at p = 1:** " + ", ".join(f"{m} {100 * a:.1f} %" for m, a in acc.items())
            + f" (chance: {100 / NUM_CLASSES:g} %).")


def error_line(f1: pd.DataFrame) -> str | None:
    """For which Fig. 1c models the test error rises with p (never falls from one level to the next)."""
    f1 = f1.sort_values("level") if len(f1) else f1
    curves = {m: g["test_error"].tolist() for m, g in f1.groupby("model")} if len(f1) else {}
    curves = {m: e for m, e in curves.items() if len(e) > 1}
    if not curves:
        return None
    rises = [m for m, e in curves.items() if all(b >= a for a, b in zip(e, e[1:], strict=False))]
    return (f"- **Test error rises with p** (Fig. 1c) for {_models(rises)}; not for "
            f"{_models(sorted(set(curves) - set(rises)))}.")


def shows_section(df: pd.DataFrame, f1: pd.DataFrame | None) -> list[str]:
    """The README's `What these runs show`: each sentence computed from the runs used, none written as a constant."""
    lines = [line for line in (random_label_line(df), chance_line(df), error_line(f1 if f1 is not None else pd.DataFrame()))
             if line]
    return ["## What these runs show", "", *(lines or ["No run of the paper's Table 1 / Fig. 1 protocol is used."]), ""]


def lr_line(df: pd.DataFrame) -> str | None:
    """Runs whose LR decays per a fixed number of steps: how far it had decayed by their last step, per model;
    on a small subset that is hardly at all, so those runs train at a nearly constant LR."""
    period = pd.to_numeric(df["lr_decay_period"], errors="coerce") if len(df) else pd.Series(dtype=float)
    runs = df.assign(period=period, decay=pd.to_numeric(df["lr_decay"], errors="coerce")).dropna(
        subset=["period", "decay", "steps"]) if len(df) else df
    if runs.empty:
        return None
    runs = runs.assign(left=runs["decay"] ** ((runs["steps"] - 1).clip(lower=0) // runs["period"]))
    per_model = runs.groupby("model").agg(left=("left", "min"), steps=("steps", "max"))
    flat = per_model.index[per_model["left"] > NEARLY_CONSTANT]
    said = "; ".join(f"{m} {100 * r.left:.0f} % ({r.steps:,.0f} steps)" for m, r in per_model.iterrows())
    return (f"- **The LR decays every fixed number of steps, not per epoch** (the LR schedule above): the LR at a "
            f"run's last step, as a share of its initial LR (the lowest per model): {said}. So "
            + (f"{_models(flat)} trained at a nearly constant LR (above {100 * NEARLY_CONSTANT:.0f} % of its start "
               "throughout), where the paper's per-epoch decay ends far lower: what this scale cannot show includes "
               "the effect of the LR decay on fitting." if len(flat) else
               "every run's LR decayed, though less than under the paper's per-epoch schedule on a full epoch."))


def notes(df: pd.DataFrame, t1: pd.DataFrame, scale: str | None, unused: pd.DataFrame | None = None,
          standard_only: bool = True, imagenet: int = 0, f1: pd.DataFrame | None = None) -> str:
    """The README's head: the runs used, the stopping rule, the deviations from the paper's setup, what the runs
    show and where our numbers differ from the paper's. `df`: the CIFAR-10 runs used; `imagenet`: how many
    ImageNet runs are used too (they have their own section, `imagenet.section`); `f1`: the Fig. 1b/1c data."""
    n_unused = 0 if unused is None else len(unused)
    lines = [
        f"# rethink report — scale: {scale or 'all runs'}", "",
        f"{len(df)} runs used: FINISHED CIFAR-10 training runs"
        + (f" at scale={scale}" if scale else "")
        + (" that ran their scale's standard budget" if standard_only else " whatever their budget (`--budget any`)")
        + (f", seeds {sorted(int(s) for s in df['seed'].unique())}, devices "
           f"{sorted(str(d) for d in df['device'].dropna().unique())}" if len(df) else "")
        + (f". Also {imagenet} ImageNet Inception v3 run(s) under the same rules: "
           "[Table 2 / Fig. 2a (ImageNet)](#table-2--fig-2a-imagenet)" if imagenet else "")
        + f". {n_unused} run(s) of the store not used: listed under [Runs not used](#runs-not-used).", "",
        "- **Budget and time to overfit:** "
        + ("each run trains its model's whole epoch budget (`trainer.stop_at_target=false`, the presets' protocol; "
           "runs that stopped at the target are not used unless `--budget any`), so accuracies are measured after "
           "convergence. " if standard_only else "runs that stopped at the target are used too (`--budget any`). ")
        + "'Time to overfit' is the first SGD step where the full-training-set accuracy (eval mode) reached "
        f"{', '.join(f'{t:g}' for t in sorted(df['target'].dropna().unique())) or 'the target'}, read from the "
        "run's curve. A run that never reached it is censored: its last step is only a lower bound, drawn as an "
        "open triangle in Fig. 1b and written `>= x` in its table; where the p = 0 run itself is censored there is "
        "no ratio (`p=0 censored`, not drawn)." + overfit_sentence(f1),
        "- **Accuracies** are the last epoch's: train = full training set in eval mode against the (possibly "
        "corrupted) training labels; test = true test labels. `fitted` counts the runs that reached the target.",
        deviations_section(df),
        *shows_section(df, f1),
        "## Where our numbers differ from the paper", "",
    ]
    big = [r for r in t1.dropna(subset=["test diff"]).to_dict("records") if abs(r["test diff"]) > 3]
    if scale == "cpu":
        lines.append("- At `scale=cpu` every model trains on a subset (see the training budget above; the paper used all 50,000 "
                     "images), so its test accuracies are not the paper's. The reduced scale is for the paper's "
                     "*effects*; which of them these runs reproduce is under [What these runs show](#what-these-runs-show).")
        big = [r for r in big if r["model"].startswith("mlp")]  # the conv nets' gaps: the subset size, said above
    lines += [f"- {r['model']}, crop {r['random crop']}, wd {r['weight decay']}: test {r['test (ours)']} vs paper "
              f"{r['test (paper)']} ({r['test diff']:+.2f} points)." for r in big]
    lines += [line for line in (_unfit_line(df), lr_line(df)) if line]
    return "\n".join(lines) + "\n"


def unused_section(unused: pd.DataFrame, sweeps: int) -> str:
    """The README's `Runs not used` section: every run the tables left out, and why."""
    text = "\n## Runs not used\n\n"
    if unused.empty:
        text += "Every training run of the experiment is used.\n"
    else:
        counts = unused["reason"].str.split(":").str[0].str.split(" \\(").str[0].value_counts()
        text += ("By reason: " + "; ".join(f"{why}: {n}" for why, n in counts.items()) + ".\n\n"
                 + markdown(unused.assign(**{"run id": unused["run id"].str[:12]})))
    if sweeps:
        text += f"\n({sweeps} sweep parent run(s), tag kind=sweep, are bookkeeping, not results.)\n"
    return text


def figures_section(figures: dict[str, list[Path]]) -> str:
    """Each figure embedded as PNG, with its caption and a link to the PDF."""
    text = "\n## Figures\n"
    for name, paths in figures.items():
        png, other = paths[0], paths[1:]
        links = " · ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in other)
        text += f"\n### {name}\n\n![{name}]({png.name})\n\n{CAPTIONS[name]} {links}\n"
    return text
