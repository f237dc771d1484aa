"""The report folder's README text: the head (runs used, stopping rule, accuracies, the deviations from
the paper's setup, where our numbers differ), the figure captions, and the runs not used with their reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rethink.report.deviations import deviations_section
from rethink.report.imagenet import FIG2A_CAPTION
from rethink.report.tables import markdown

CAPTIONS = {
    "fig1a": "Inception's training loss under the five randomization tests (one seed each); dotted: a uniform "
             "prediction's loss.",
    "fig1b": "Time to overfit (first step with train accuracy >= target) relative to p = 0, same model and seed. "
             "Open triangles are lower bounds: a run that stopped before the target is counted at its last step.",
    "fig1c": "Test error at the end of training; x: the paper's p = 0 values (read off its figure); dotted: chance. "
             "Hollow points: not all runs reached the target.",
    "fig2a": FIG2A_CAPTION,
    "fig2b": "Train and test accuracy per step; shaded: what stopping at the best test accuracy would gain.",
    "wd_sweep": "An extension, not in the paper: final training accuracy on random labels against the weight decay "
                "coefficient (log scale), one line per model; filled: every run reached the target, open: not all "
                "did; dashed: the target; dotted: chance. Data: the weight decay sweep table above.",
}


def _unfit_line(df: pd.DataFrame, scale: str | None) -> str | None:
    """The README's line on runs that never reached the target, or None if all did."""
    unfit = df[df["fit_step"].isna()]
    if unfit.empty:
        return None
    runs = ", ".join(
        f"{r.model}{' +crop' if r.crop else ''}{' +flip' if r.flip else ''}{' +rot' if r.rotate else ''}{' +wd' if r.wd else ''} {r.kind}@{r.level:g} "
        f"(train {100 * r.train_acc:.1f}%, {r.stop_reason} after {r.steps:.0f} steps)" for r in unfit.itertuples())
    why = (" `max_epochs`: the whole budget ran without reaching the target; `stall`: train accuracy stopped "
           "improving for `trainer.patience` epochs (under the x0.95 decay the LR is a few percent of its start by then)."
           + (" At scale=cpu the conv nets get a few hundred SGD steps." if scale == "cpu" else ""))
    return f"- {len(unfit)} run(s) never reached the target training accuracy: {runs}.{why}"


def notes(df: pd.DataFrame, t1: pd.DataFrame, scale: str | None, unused: pd.DataFrame | None = None,
          standard_only: bool = True, imagenet: int = 0) -> str:
    """The README's head: the runs used, the stopping rule, the deviations from the paper's setup, and where our
    numbers differ from the paper's. `df`: the CIFAR-10 runs used; `imagenet`: how many ImageNet runs are used
    too (they have their own section, `imagenet.section`)."""
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
        "no ratio (`p=0 censored`, not drawn).",
        "- **Accuracies** are the last epoch's: train = full training set in eval mode against the (possibly "
        "corrupted) training labels; test = true test labels. `fitted` counts the runs that reached the target.",
        deviations_section(df),
        "## Where our numbers differ from the paper", "",
    ]
    big = [r for r in t1.dropna(subset=["test diff"]).to_dict("records") if abs(r["test diff"]) > 3]
    if scale == "cpu":
        lines.append("- At `scale=cpu` every model trains on a subset (see the training budget above; the paper used all 50,000 "
                     "images): the MLPs' test accuracy lands a few points below the paper's, the conv nets' far below. "
                     "The reduced scale shows the *effects* (fitting random labels, chance-level test accuracy at "
                     "p = 1, error rising with p), not the paper's absolute test numbers.")
        big = [r for r in big if r["model"].startswith("mlp")]  # the conv nets' gaps: the subset size, said above
    lines += [f"- {r['model']}, crop {r['random crop']}, wd {r['weight decay']}: test {r['test (ours)']} vs paper "
              f"{r['test (paper)']} ({r['test diff']:+.2f} points)." for r in big]
    if line := _unfit_line(df, scale):
        lines.append(line)
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
