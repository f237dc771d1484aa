"""What a training run records about itself, so the MLflow UI reads at a glance: typed identity
params (no duplicates), the purpose tags the report selects on, the run name, the description,
and the data set inputs (name, source, content digest).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rethink.regularizers import switched_on
from rethink.run import identity

# Command-line overrides that change neither the budget nor the protocol of a job: the choice of
# the experiment itself (groups, corruption level, seed) and where/how fast it runs. Any other
# override (a subset size, an epoch cap, a learning rate) makes the run's budget "custom".
STANDARD_OVERRIDES = ("model", "dataset", "corruption", "corruption.level", "corruption.kind", "regularizer", "row",
                      "scale", "experiment", "task", "seed", "rerun", "sweep_levels",
                      "dataset.root", "dataset.download", "trainer.device", "trainer.devices", "dataset.workers", "dataset.decode", "trainer.compile", "trainer.amp",
                      "trainer.channels_last", "trainer.eval_batch_size", "trainer.checkpoint_every")
STANDARD_SUBTREES = ("mlflow", "paths", "hydra")  # every key under these
PRESETS = {"table1": "Table 1", "table4": "Table 4", "fig1a": "Fig. 1a", "fig1bc": "Fig. 1b/1c", "fig2b": "Fig. 2b",
           "wd_sweep": "Table 4's weight decay, swept (an extension)", "table2": "Table 2 (ImageNet)",
           "fig2a": "Fig. 2a (ImageNet)"}
CORRUPTIONS = {
    "labels": "{p} of the training labels replaced by labels drawn uniformly at random",
    "shuffled_pixels": "one fixed random permutation of the pixels applied to {p} of the images (train and test)",
    "random_pixels": "an independent random permutation of the pixels applied to {p} of the images (train and test)",
    "gaussian": "{p} of the images replaced by Gaussian noise with the data's mean and variance (train and test)",
}
DEFAULT_WD = 5e-4  # conf/regularizer/weight_decay.yaml
REFERENCE = re.compile(r"^\$\{([\w.]+)\}$")
SELECTED = re.compile(r"^\$\{oc\.select:([\w.]+),.*\}$")


def _interpolated_from(cfg: DictConfig, key: str, pattern: re.Pattern = REFERENCE) -> str | None:
    """The key that `key` is a plain `${other.key}` reference to (or, with SELECTED, an oc.select of), if it is one."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or not OmegaConf.is_interpolation(node, leaf):
        return None
    m = pattern.match(str(node._get_node(leaf)._value()))
    return m.group(1) if m else None


def params(cfg: DictConfig, corruption: Any) -> dict[str, str]:
    """The keys that define the experiment (the job identity), each once, with its natural type; the corruption level
    as the built `corruption` has it (a float, also when the command line gave `corruption.level=1`).

    A key that only repeats another (`trainer.lr: ${model.lr}`) is left out when the one it repeats is logged.
    A model's recipe value that a trainer key selects (`trainer.optimizer: ${oc.select:model.optimizer,sgd}`) is
    logged once, as the trainer key, so every model's runs have the same columns; settings of an optimizer or head
    the job does not use (`trainer.rmsprop_*` under SGD, `trainer.aux_weight` without an auxiliary head) are left out.
    """
    flat = identity.identity_values(cfg)
    selected = {src for key in flat if (src := _interpolated_from(cfg, key, SELECTED)) is not None and src != key}
    unused = set() if flat.get("trainer.optimizer") == "rmsprop_tf" else {"trainer.rmsprop_decay", "trainer.rmsprop_eps"}
    if "model.net.aux_logits" not in flat:
        unused.add("trainer.aux_weight")
    out = {}
    for key, value in flat.items():
        source = _interpolated_from(cfg, key)
        if (source is not None and source in flat and source != key) or key in selected or key in unused:
            continue
        out[key] = identity.natural(value)
    return out | {"corruption.level": identity.natural(float(corruption.level))}


def purpose(hctx: dict[str, Any]) -> dict[str, str]:
    """Tags saying what the run is for: `scale`, `paper` (the preset), `row`, and `budget`: standard
    unless the command line changed the budget or protocol (then `budget_overrides` lists how)."""
    choices, swept = hctx.get("choices", {}), set(hctx.get("swept", []))
    custom = [o for o in hctx.get("overrides", []) if not _standard(o) and o.split("=", 1)[0] not in swept]
    tags = {"scale": str(choices.get("scale") or "custom"), "budget": "custom" if custom else "standard"}
    if choices.get("experiment"):
        tags["paper"] = str(choices["experiment"])
    if choices.get("row"):
        tags["row"] = str(choices["row"])
    if custom:
        tags["budget_overrides"] = " ".join(custom)
    return tags


def _standard(override: str) -> bool:
    """Whether one override (`key=value`) leaves the budget and protocol as the preset/scale set them."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key in STANDARD_OVERRIDES or key.split(".", 1)[0] in STANDARD_SUBTREES


def run_name(model: str, kind: str, level: float, regularizer: dict[str, Any], seed: int, scale: str = "") -> str:
    """A run name that leads with what a sweep varies, e.g. `p=0.5 mlp_1x512 +wd+crop cpu`; the
    corruption kind shows when it is not labels, the seed when it is not 0, the weight decay
    coefficient when it is not the default 5e-4 (`+wd0.004`)."""
    wd = float(regularizer.get("weight_decay", 0) or 0)
    regs = "".join(f"+{s.tag}" if s.key != "weight_decay" or wd == DEFAULT_WD else f"+wd{wd:g}"
                   for s in switched_on(regularizer))
    parts = [f"p={float(level):g}", model, "" if kind == "labels" else kind, regs, scale, f"s{seed}" if int(seed) else ""]
    return " ".join(p for p in parts if p)


def description(cfg: DictConfig, corruption: Any, train_examples: int, tags: dict[str, str]) -> str:
    """The run's `mlflow.note.content`: what it tests and which table or figure of the paper it is for."""
    regs = [s.name for s in switched_on(cfg.regularizer)]
    level = corruption.level
    what = CORRUPTIONS[corruption.kind].format(p=f"{level:.0%}") if level > 0 else "the true data, uncorrupted"
    paper = tags.get("paper")
    lines = [
        f"**Randomization test** (Zhang et al., ICLR 2017): `{cfg.model.name}` trained on {cfg.dataset.name} "
        f"({train_examples:,} training images, scale={tags['scale']}) with {what}; test labels are never changed.",
        "",
        f"- explicit regularizers: {', '.join(regs) or 'none'}; seed {cfg.seed}",
        f"- paper: {PRESETS.get(paper, paper)} (preset `{paper}`" + (f", row `{tags['row']}`)" if "row" in tags else ")")
        if paper else "- paper: not part of a preset (an ad-hoc sweep)",
        f"- budget: {tags['budget']}" + (f" (overrides: `{tags['budget_overrides']}`)" if "budget_overrides" in tags else ""),
    ]
    return "\n".join(lines)


def digest(*tensors) -> str:
    """sha256 of the tensors' bytes (first 16 hex digits): the content, so two copies of a data
    set that differ (JPEG re-encoding vs the original binaries) get different digests."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_inputs(cfg: DictConfig, corruption: Any, data, corrupted) -> list[dict[str, str]]:
    """MLflow dataset inputs: the training and test subsets as read, and the training set after
    corruption (its digest tells two corruption draws apart)."""
    from pathlib import Path

    from rethink.data.memory import source_of

    ds, c = cfg.dataset, corruption
    source_type, source = source_of(ds.name, Path(ds.root))
    common = {"source": source, "source_type": source_type}
    if data.streamed:  # its images are never all read: the file lists and labels identify it
        files = combine(*(hashlib.sha256(f.tobytes()).hexdigest()[:16] for f in (data.train_files, data.test_files)))
        return [
            {"name": f"{ds.name}-train", "digest": combine(files, digest(data.train_y)), "context": "training"} | common,
            {"name": f"{ds.name}-test", "digest": combine(files, digest(data.test_y)), "context": "evaluation"} | common,
            {"name": f"{ds.name}-train {c.kind}@{float(c.level):g} seed {c.seed}",
             "digest": combine(files, digest(corrupted.train_y)), "context": "training, after corruption"} | common,
        ]
    images = digest(data.train_x)  # hashed once: label corruption keeps the very same tensor
    after = images if corrupted.train_x is data.train_x else digest(corrupted.train_x)
    return [
        {"name": f"{ds.name}-train", "digest": combine(images, digest(data.train_y)), "context": "training"} | common,
        {"name": f"{ds.name}-test", "digest": digest(data.test_x, data.test_y), "context": "evaluation"} | common,
        {"name": f"{ds.name}-train {c.kind}@{float(c.level):g} seed {c.seed}",
         "digest": combine(after, digest(corrupted.train_y)), "context": "training, after corruption"} | common,
    ]


def combine(*digests: str) -> str:
    """One digest of several (images and labels hashed apart)."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
