"""A job's identity: the hash of what it computes, so a re-run sweep can skip or resume it.

The identity is the sha256 of the flattened resolved config, less the keys listed in
`NON_IDENTITY_KEYS` (where results go, how fast they are computed). Adding a config key that
does not change results must add it there too, or every FINISHED job would be trained again:
`tests/test_identity.py` pins the hashes of stored runs.

A key added later that does change results is listed in `LEGACY_DEFAULTS` with the value that
reproduces the behaviour from before it existed: at that value it is left out of the hash, so old
runs keep their identity (and are reused), while any other value, the new default included,
computes something different and hashes differently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys (and the subtrees under them) that do not change what a training job computes.
NON_IDENTITY_KEYS = ("mlflow", "rerun", "paths", "model.cpu", "model.paper", "sweep_levels", "trainer.device", "trainer.devices", "trainer.compile",
                     "dataset.workers", "dataset.decode",
                     "trainer.eval_batch_size", "trainer.checkpoint_every", "checkpoint_dir")

# Keys added after runs were stored -> the value meaning "as before the key existed" (dropped from the hash).
LEGACY_DEFAULTS = {
    "model.init": "torch",                         # PyTorch's own initialization
    "model.net.init": "torch",                     # the same, as the model's net receives it
    "model.net.conv_module": "bias_bn_noaffine",   # Inception: conv+bias -> BatchNorm2d(affine=False)
    "model.net.bn_momentum": 0.1,                  # Inception: PyTorch's BatchNorm momentum
    "model.net.bn_eps": 1e-5,                      # Inception: PyTorch's BatchNorm epsilon
    "regularizer.rotate": 0,                       # no random rotation
    "trainer.optimizer": "sgd",                    # SGD with momentum
    "trainer.rmsprop_decay": 0.9,                  # (rmsprop_tf only)
    "trainer.rmsprop_eps": 1.0,                    # (rmsprop_tf only)
    "trainer.label_smoothing": 0.0,                # none
    "trainer.aux_weight": 0.4,                     # (models with an auxiliary head only)
    "trainer.lr_decay_epochs": 1,                  # LR decay every epoch (when lr_decay_period is null)
    "dataset.stream": "auto",                      # imagefolder: held in memory unless too large
    "dataset.train_eval_size": 10000,              # (streamed only) the train-accuracy subset
}


def flatten(cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved config as {dotted.key: value}, without Hydra's own node and `_target_`s."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg, "")
    return out


def param_value(v: Any) -> str:
    """Numbers as floats ("0" and "0.0" must not be two values), lists as JSON: the hashed form."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | float):
        return repr(float(v))
    if isinstance(v, list | tuple):
        return json.dumps(v)
    return str(v)


def natural(v: Any) -> str:
    """A value as the config wrote it, the form params are logged in: `0` for an int, `0.5` for a
    float, `True`, lists as JSON (searchable as `params.seed = '0'`)."""
    if isinstance(v, list | tuple):
        return json.dumps(v)
    return repr(v) if isinstance(v, float) else str(v)


def without_legacy(flat: dict[str, Any]) -> dict[str, Any]:
    """`flat` less the `LEGACY_DEFAULTS` keys at their legacy value: an absent key means that value."""
    return {k: v for k, v in flat.items()
            if k not in LEGACY_DEFAULTS or param_value(v) != param_value(LEGACY_DEFAULTS[k])}


def hash_values(flat: dict[str, Any]) -> str:
    """The identity of a flat {key: value} mapping (order does not matter; legacy defaults dropped)."""
    blob = json.dumps({k: param_value(v) for k, v in sorted(without_legacy(flat).items())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def without(flat: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """`flat` less every key equal to, or under, one of `skip`."""
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in skip)}


def identity_values(cfg: DictConfig) -> dict[str, Any]:
    """What a training job's identity is made of: its resolved config less `NON_IDENTITY_KEYS`.

    The `task` node is left out too for training jobs, so adding the task group did not change
    the identity of runs recorded before it existed.
    """
    flat = flatten(cfg)
    return without(flat, NON_IDENTITY_KEYS + (("task",) if flat.get("task.name", "train") == "train" else ()))


def config_hash(cfg: DictConfig) -> str:
    """A training job's identity: the hash of `identity_values`."""
    return hash_values(identity_values(cfg))


def task_hash(task: DictConfig, non_identity: tuple[str, ...]) -> str:
    """A theory job's identity: its `task` node less the keys that do not change results."""
    return hash_values({f"task.{k}": v for k, v in without(flatten(task), non_identity).items()})
