"""The README's "Deviations from the paper": how the runs used were set up where the paper differs or is
silent, read from each run's params and tags and grouped by value with a count of runs, so the list
describes the runs behind the numbers (older runs included), not today's config files."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from rethink.report.paper import PAPER_LR_DECAY, PAPER_SETUP
from rethink.report.runs import is_missing

NOT_RECORDED = "not recorded"
JPEG = "CIFAR-10 from the local copy, re-encoded as JPEG (quality 75, 4:2:0 chroma subsampling)"
TORCHVISION = "CIFAR-10 from torchvision's download of the original"
SOURCE_NOT_RECORDED = "CIFAR-10, copy not recorded (no dataset input: a run from before they were logged, or imported)"
WD_ON = {"weights": "conv/linear kernels only", "all": "kernels and biases"}
CONV_MODULES = {"tf_slim": "conv (no bias) -> BatchNorm with a learnable shift, no scale -> ReLU",
                "bias_bn_noaffine": "conv + bias -> BatchNorm without shift or scale -> ReLU"}
LEGACY_BATCHNORM = ("not recorded: momentum 0.1, eps 1e-05 (PyTorch's defaults, the only values before "
                    "model.net.bn_momentum / bn_eps)")
NO_BATCHNORM = "no BatchNorm: conv + bias -> ReLU (the paper's Inception w/o BatchNorm)"
LEGACY_CONV_MODULE = ("not recorded: conv + bias -> BatchNorm without shift or scale -> ReLU (the only module "
                      "before model.net.conv_module)")


def grouped(labels: pd.Series, sep: str = ", ") -> str:
    """`glorot (12 runs), torch (3 runs)`: each value once with its number of runs, the most common first."""
    counts = labels.astype(str).value_counts()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return sep.join(f"{value} ({n} run{'' if n == 1 else 's'})" for value, n in order)


def _text(value, fmt: Callable[[str], str] = str) -> str:
    """A raw param as the README writes it: `fmt(value)`, or `not recorded` where the run has none."""
    return NOT_RECORDED if is_missing(value) else fmt(str(value))


def _count(value, what: str) -> str:
    """`20,000 training images` from a number param; `training images not recorded` where it is missing."""
    return f"{what} {NOT_RECORDED}" if is_missing(value) else f"{int(value):,} {what}"


def _copy(dataset, source_type) -> str:
    """The data set copy of one run, from its training input's source type (`record.dataset_inputs`)."""
    if dataset != "cifar10":
        return str(dataset)
    if is_missing(source_type):
        return SOURCE_NOT_RECORDED
    return {"local": JPEG, "torchvision": TORCHVISION}.get(str(source_type), f"CIFAR-10 ({source_type})")


def data(df: pd.DataFrame) -> pd.Series:
    """The data set copy each run trained on, as its dataset input recorded it."""
    return pd.Series([_copy(d, t) for d, t in zip(df["dataset"], df["source_type"], strict=True)], index=df.index,
                     dtype=object)


def budget(df: pd.DataFrame) -> pd.Series:
    """Per run: its model, training and test set sizes and epoch cap."""
    def one(r) -> str:
        cap = f"epoch cap {NOT_RECORDED}" if is_missing(r.max_epochs) else f"at most {int(r.max_epochs)} epochs"
        return f"{r.model}: {_count(r.train_size, 'training images')}, {_count(r.test_size, 'test images')}, {cap}"

    return pd.Series([one(r) for r in df.itertuples()], index=df.index, dtype=object)


def stopping(df: pd.DataFrame) -> pd.Series:
    """Per run: the target training accuracy, whether reaching it stops the run, and the patience."""
    return pd.Series([f"target_train_acc={_text(r.target, lambda v: f'{float(v):g}')}, "
                      f"stop_at_target={_text(r.stop_at_target)}, patience={_text(r.patience)}"
                      for r in df.itertuples()], index=df.index, dtype=object)


def init(df: pd.DataFrame) -> pd.Series:
    """Per run: `model.init`; a run from before that param existed used PyTorch's default."""
    return df["init"].map(lambda v: "PyTorch default (no model.init param)" if is_missing(v) else str(v))


def conv_module(df: pd.DataFrame) -> pd.Series | None:
    """Per Inception run: its conv module (None: no Inception run)."""
    inc = df[df["model"].astype(str).str.startswith("inception")]
    if inc.empty:
        return None
    def one(r) -> str:
        if r.model == "inception_nobn":
            return f"{r.model}: {NO_BATCHNORM}"
        return f"{r.model}: " + (LEGACY_CONV_MODULE if is_missing(r.conv_module) else
                                 f"{r.conv_module} ({CONV_MODULES.get(str(r.conv_module), 'see the model')})")

    return pd.Series([one(r) for r in inc.itertuples()], index=inc.index, dtype=object)


def batchnorm(df: pd.DataFrame) -> pd.Series | None:
    """Per Inception run with BatchNorm: its running-statistics momentum and epsilon (None: no such run)."""
    bn = df[df["model"] == "inception"]
    if bn.empty:
        return None
    def one(r) -> str:
        if is_missing(r.bn_momentum) and is_missing(r.bn_eps):
            return LEGACY_BATCHNORM
        return f"momentum {_text(r.bn_momentum)}, eps {_text(r.bn_eps)}"

    return pd.Series([one(r) for r in bn.itertuples()], index=bn.index, dtype=object)


def weight_decay(df: pd.DataFrame) -> pd.Series | None:
    """Per run with weight decay: its coefficient and what it applies to (None: no such run)."""
    wd = df[df["weight_decay"] > 0]
    if wd.empty:
        return None
    on = wd["wd_on"].map(lambda v: f"(applied to: {NOT_RECORDED})" if is_missing(v)
                         else f"on {v} ({WD_ON.get(str(v), str(v))})")
    return wd["weight_decay"].map(lambda c: f"{c:g}") + " " + on


def precision(df: pd.DataFrame) -> pd.Series:
    """Per run: the device (tag) and the arithmetic (`trainer.amp`: auto = bf16 autocast on CUDA, fp32 on CPU)."""
    def one(device, amp) -> str:
        dev = f"device {NOT_RECORDED}" if is_missing(device) else str(device)
        amp = None if is_missing(amp) else str(amp).lower()
        if amp == "auto":  # an imported run's device tag names the GPU alone (`NVIDIA H200`)
            arith = "fp32" if dev.startswith("cpu") else "amp=auto" if is_missing(device) else "bf16 autocast"
        else:
            arith = {"true": "bf16 autocast", "false": "fp32", None: f"precision {NOT_RECORDED}"}.get(amp, f"amp={amp}")
        return f"{dev}, {arith}"

    return pd.Series([one(d, a) for d, a in zip(df["device"], df["amp"], strict=True)], index=df.index, dtype=object)


def lr_schedule(df: pd.DataFrame) -> pd.Series:
    """Per run: the LR decay factor and its period (`None`: every epoch, as the paper)."""
    def one(decay, period) -> str:
        if is_missing(decay):
            return NOT_RECORDED
        factor = f"x{float(decay):g}"
        if is_missing(period):
            return f"{factor}, period {NOT_RECORDED}"
        if str(period) == "None":
            same = float(decay) == PAPER_LR_DECAY
            return f"{factor} per epoch" + (" (as the paper)" if same else "")
        return f"{factor} every {int(float(period)):,} steps"

    return pd.Series([one(d, p) for d, p in zip(df["lr_decay"], df["lr_decay_period"], strict=True)],
                     index=df.index, dtype=object)


# (title, the params/tags read, per-run labels, the paper's setup key, separator between values)
ITEMS: list[tuple[str, str, Callable[[pd.DataFrame], pd.Series | None], str, str]] = [
    ("Data", "dataset.name, dataset input source", data, "data", ", "),
    ("Training budget", "train_examples, test_examples, trainer.max_epochs", budget, "budget", "; "),
    ("Stopping rule", "trainer.target_train_acc, trainer.stop_at_target, trainer.patience", stopping, "stopping", "; "),
    ("Initialization", "model.init", init, "init", ", "),
    ("Inception's conv module", "model.net.conv_module", conv_module, "conv_module", "; "),
    ("Inception's BatchNorm", "model.net.bn_momentum, model.net.bn_eps", batchnorm, "batchnorm", "; "),
    ("Weight decay", "regularizer.weight_decay, regularizer.weight_decay_on", weight_decay, "weight_decay", "; "),
    ("Device and precision", "tag device, trainer.amp", precision, "precision", "; "),
    ("LR schedule", "trainer.lr_decay, trainer.lr_decay_period", lr_schedule, "lr_schedule", "; "),
]


def deviations_section(df: pd.DataFrame) -> str:
    """The README section: per setting, our values with their run counts, and what the paper did."""
    text = "\n## Deviations from the paper\n\n"
    if df.empty:
        return text + "No run used: nothing to compare.\n"
    text += (f"How the {len(df)} runs used were set up, read from their params and tags (each value with the "
             "number of runs that had it), beside what the paper did or says.\n\n")
    for title, keys, labels_of, paper, sep in ITEMS:
        labels = labels_of(df)
        if labels is None:
            continue
        line = f"- **{title}** (`{keys}`): {grouped(labels, sep)}. Paper: {PAPER_SETUP[paper]}."
        if paper == "data" and (labels == JPEG).any():
            line += " JPEG loses a little detail, so our test accuracies run a little lower than on the original."
        text += line + "\n"
    return text
