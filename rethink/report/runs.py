"""Which runs the report uses: every run of the store read as one typed row, the first reason a run
is left out (status, task, data set, scale, budget, missing values), and the selection itself.

Two data sets qualify: CIFAR-10 (Tables 1 and 4, Fig. 1, Fig. 2b) and ImageNet with Inception v3
(Table 2, Fig. 2a); `cifar_runs` and `imagenet_runs` split the runs used between the two halves.

Kept in one module so that the rules that admit runs to the paper's rows live in one place.
"""

from __future__ import annotations

import pandas as pd

from rethink.run import track

STANDARD = ("standard",)  # the budgets the paper tables use by default
UNTAGGED = "untagged"  # the budget of a run recorded before runs were tagged with one
REQUIRED_PARAMS = {"model": "model.name", "kind": "corruption.kind", "level": "corruption.level", "seed": "seed"}
REQUIRED_METRICS = {"train_acc": "train/acc", "test_acc": "test/acc", "steps": "steps"}
UNUSED_COLUMNS = ["run", "run id", "status", "reason"]
TRUE = {"true", "1", "1.0"}
CIFAR, IMAGENET = "cifar10", "imagenet"  # the paper's two data sets (param dataset.name)
IMAGENET_MODEL = "inception_v3"  # Table 2 / Fig. 2a's only model


def _col(raw: pd.DataFrame, key: str) -> pd.Series:
    """Column `key` of search_runs' frame, or all-missing where no run has it."""
    return raw[key] if key in raw else pd.Series(None, index=raw.index, dtype=object)


def _num(raw: pd.DataFrame, key: str) -> pd.Series:
    """A param or metric as numbers: "0", "0.0" and 0.0 alike; anything unreadable is NaN."""
    return pd.to_numeric(_col(raw, key), errors="coerce").astype(float)


def _flag(raw: pd.DataFrame, key: str) -> pd.Series:
    """A boolean param ("True"/"False", or 1/0) as bools; missing is False."""
    return _col(raw, key).map(lambda v: str(v).strip().lower() in TRUE).astype(bool)


def read_runs(uri: str, experiment: str = "rethink") -> pd.DataFrame:
    """Every run of the experiment, whatever its status or kind, as one typed row (nothing filtered)."""
    raw = track.runs_frame(uri, experiment)
    if raw.empty:
        return pd.DataFrame()
    sources = track.dataset_sources(uri, experiment)  # (source type, source) of each run's training data
    p, m = (lambda k: _col(raw, f"params.{k}")), (lambda k: _num(raw, f"metrics.{k}"))  # noqa: E731
    return pd.DataFrame({
        "run_id": raw["run_id"], "run": _col(raw, "tags.mlflow.runName"), "status": _col(raw, "status"),
        "start_time": _col(raw, "start_time"), "config_hash": _col(raw, "tags.config_hash").fillna(raw["run_id"]),
        "run_kind": _col(raw, "tags.kind"), "task": p("task.name"), "dataset": p("dataset.name"),
        "scale": _col(raw, "tags.scale").combine_first(p("choice.scale")),
        "budget": _col(raw, "tags.budget"), "budget_overrides": _col(raw, "tags.budget_overrides"),
        "paper": _col(raw, "tags.paper"), "row": _col(raw, "tags.row"),
        "model": p("model.name"), "kind": p("corruption.kind"), "level": _num(raw, "params.corruption.level"),
        "crop": _flag(raw, "params.regularizer.random_crop"), "flip": _flag(raw, "params.regularizer.flip"),
        "rotate": _num(raw, "params.regularizer.rotate").fillna(0) > 0,
        "wd": _num(raw, "params.regularizer.weight_decay").fillna(0) > 0,
        "dropout": _num(raw, "params.regularizer.dropout").fillna(0) > 0,
        "seed": _num(raw, "params.seed"), "train_size": _num(raw, "params.train_examples"),
        "target": _num(raw, "params.trainer.target_train_acc"),
        "train_acc": m("train/acc"), "test_acc": m("test/acc"), "running_acc": m("train/running_acc"), "fit_step": m("fit_step"),
        "train_top5": m("train/top5"), "test_top5": m("test/top5"),  # ImageNet runs (top-5 of 1,000 classes)
        "best_test_acc": m("best_test_acc"), "best_test_top5": m("best_test_top5"),
        "fit_epoch": m("fit_epoch"), "steps_to_99": m("steps_to_99"), "steps_to_99_9": m("steps_to_99_9"),
        "steps": m("steps"), "epochs": m("epochs"), "wall_time": m("wall_time"),
        "stop_reason": _col(raw, "tags.stop_reason"), "device": _col(raw, "tags.device"),
        # The setup, for the README's deviations from the paper (raw params: a missing one is NaN).
        "weight_decay": _num(raw, "params.regularizer.weight_decay").fillna(0),
        "wd_on": p("regularizer.weight_decay_on"), "test_size": _num(raw, "params.test_examples"),
        "max_epochs": _num(raw, "params.trainer.max_epochs"), "stop_at_target": p("trainer.stop_at_target"),
        "patience": p("trainer.patience"), "init": p("model.init"), "conv_module": p("model.net.conv_module"),
        "bn_momentum": p("model.net.bn_momentum"), "bn_eps": p("model.net.bn_eps"),
        "source_type": raw["run_id"].map(lambda r: sources.get(r, (None, None))[0]),
        "source": raw["run_id"].map(lambda r: sources.get(r, (None, None))[1]),
        "amp": p("trainer.amp"), "lr_decay": p("trainer.lr_decay"), "lr_decay_period": p("trainer.lr_decay_period"),
        "lr_decay_epochs": _num(raw, "params.trainer.lr_decay_epochs"), "optimizer": p("trainer.optimizer"),
        "train_eval_size": _num(raw, "params.dataset.train_eval_size"),  # streamed data: the train-accuracy subset
    })


def is_missing(value) -> bool:
    """Whether a cell of the runs frame holds nothing (None or NaN; a string never counts as missing)."""
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _budget_reason(r: dict, budgets: tuple[str, ...] | None) -> str | None:
    """Why the run's budget keeps it out of the paper tables (None: it does not)."""
    budget = UNTAGGED if is_missing(r["budget"]) else str(r["budget"])
    if budgets is None or budget in budgets:
        return None
    if budget == UNTAGGED:
        return "untagged: no budget tag (an older run; its budget is unknown)"
    if budget == "custom":
        overrides = "" if is_missing(r["budget_overrides"]) else str(r["budget_overrides"])
        return f"custom budget: {overrides or '(overrides not recorded)'}"
    return f"budget {budget}"


def why_not_used(r: dict, scale: str | None, budgets: tuple[str, ...] | None = STANDARD) -> str | None:
    """The first reason a run (one row of `read_runs`) is not used for the paper tables; None: it is."""
    if r["status"] != "FINISHED":
        return f"status {r['status']}"
    if not is_missing(r["task"]) and r["task"] != "train":
        return f"not a training run (task={r['task']})"
    if is_missing(r["dataset"]):
        return "not a training run (no dataset.name param)"
    if r["dataset"] not in (CIFAR, IMAGENET):
        return f"dataset {r['dataset']} (the paper's tables are CIFAR-10 and ImageNet)"
    if r["dataset"] == IMAGENET and not is_missing(r["model"]) and r["model"] != IMAGENET_MODEL:
        return f"model {r['model']} on ImageNet (Table 2 / Fig. 2a are {IMAGENET_MODEL})"
    if scale and r["scale"] != scale:
        return "no scale recorded" if is_missing(r["scale"]) else f"other scale: {r['scale']}"
    if reason := _budget_reason(r, budgets):
        return reason
    if budgets is not None and r["stop_reason"] == "target" and str(r["stop_at_target"]).lower() in TRUE:
        return "stopped at the target (trainer.stop_at_target=true): not trained to the end of its budget"
    if missing := [k for c, k in REQUIRED_PARAMS.items() if is_missing(r[c])]:
        return "missing or unreadable params: " + ", ".join(missing)
    if missing := [k for c, k in REQUIRED_METRICS.items() if is_missing(r[c])]:
        return "missing metrics: " + ", ".join(missing)
    return None


def split_runs(runs: pd.DataFrame, scale: str | None,
               budgets: tuple[str, ...] | None = STANDARD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs used, runs not used with the reason): what `why_not_used` admits, newest per config_hash.

    Sweep parent runs (tag kind=sweep) are bookkeeping, not results, and are in neither frame.
    """
    if runs.empty:
        return runs, pd.DataFrame(columns=UNUSED_COLUMNS)
    runs = runs[runs["run_kind"] != "sweep"].sort_values("start_time")
    reasons = pd.Series([why_not_used(r, scale, budgets) for r in runs.to_dict("records")], index=runs.index, dtype=object)
    ok = runs[reasons.isna()]
    # Of several runs of one config (rerun=true), the newest counts.
    newest = ok.drop_duplicates("config_hash", keep="last").set_index("config_hash")["run_id"]
    older = ok["run_id"] != ok["config_hash"].map(newest)
    reasons[older[older].index] = [f"superseded by a newer run of the same config ({newest[h][:8]})"
                                   for h in ok.loc[older, "config_hash"]]
    used = runs[reasons.isna()].reset_index(drop=True)
    left_out = reasons.notna()
    out = runs[left_out].assign(reason=reasons[left_out])  # (a whole Series would give an empty frame its index)
    unused = pd.DataFrame({"run": out["run"], "run id": out["run_id"], "status": out["status"], "reason": out["reason"]})
    return used, unused.sort_values(["reason", "run"], key=lambda s: s.astype(str)).reset_index(drop=True)


def load_runs(uri: str, experiment: str = "rethink", scale: str | None = None,
              budgets: tuple[str, ...] | None = STANDARD) -> pd.DataFrame:
    """The runs the paper tables use: FINISHED CIFAR-10 and ImageNet training runs of `scale` with a standard budget."""
    return split_runs(read_runs(uri, experiment), scale, budgets)[0]


def cifar_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The CIFAR-10 runs among the runs used (Tables 1 and 4, Fig. 1, Fig. 2b, the weight decay sweep)."""
    return df[df["dataset"] == CIFAR].reset_index(drop=True) if len(df) else df


def imagenet_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The ImageNet Inception v3 runs among the runs used (Table 2, Fig. 2a)."""
    return df[(df["dataset"] == IMAGENET) & (df["model"] == IMAGENET_MODEL)].reset_index(drop=True) if len(df) else df


def require_one_scale(used: pd.DataFrame, scale: str | None) -> None:
    """Refuse to average runs of several scales into one table when no --scale was given."""
    scales = sorted({str(s) for s in used["scale"].dropna()}) if len(used) else []
    if scale is None and len(scales) > 1:
        raise SystemExit(f"runs of several scales ({', '.join(scales)}): pass --scale to pick one")


def history(uri: str, run_id: str, key: str) -> pd.DataFrame:
    """One metric's logged values of one run as a frame (`step`, `value`), in step order."""
    hist = track.metric_history(uri, run_id, key)
    return pd.DataFrame({"step": [s for s, _ in hist], "value": [v for _, v in hist]}).sort_values("step")


def train_sizes(df: pd.DataFrame) -> dict[str, int]:
    """Training-set size per model (the largest, if runs differ)."""
    return {m: int(s.max()) for m, s in df.dropna(subset=["train_size"]).groupby("model")["train_size"]}
