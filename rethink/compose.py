"""Config -> objects: a job's `dataset`, `corruption` and `trainer` nodes instantiated through their `_target_`s
(Hydra's `instantiate`), whose dataclasses check every value, so bad input stops here with rethink's one line
instead of Hydra's wrapped traceback. Derived values go to the built objects, never back into the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from rethink.errors import RethinkError


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)`, surfacing our own one-line errors instead of Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, RethinkError):
            raise e.__cause__ from None
        raise


def train_settings(cfg: DictConfig) -> Any:
    """The `trainer` node (`_target_: TrainSettings`) plus the regularizer switches the loop needs."""
    r = cfg.regularizer
    return build(cfg.trainer, weight_decay=r.weight_decay, weight_decay_on=r.weight_decay_on, random_crop=r.random_crop,
                 flip=r.flip, rotate=r.rotate, crop_size=cfg.dataset.crop_size, seed=cfg.seed)


@dataclass
class JobParts:
    """A training job's checked specs: the data set, the randomization test, the trainer settings."""

    dataset: Any
    corruption: Any
    settings: Any


def job_parts(cfg: DictConfig) -> JobParts:
    """Build and check the specs of a training job: the first bad value stops here, before any I/O."""
    return JobParts(build(cfg.dataset), build(cfg.corruption), train_settings(cfg))
