"""Hydra callbacks: prepare the MLflow store in the launching process, before any job starts."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rethink import track

log = logging.getLogger(__name__)


class MLflowStoreCallback(Callback):
    """Create the SQLite schema and the experiment once, so parallel jobs never race the migrations."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = track.tracking_uri(config)
        experiment_id = track.ensure_experiment(uri, config.mlflow.experiment)
        log.info("MLflow store %s, experiment %r (id %s)", uri, config.mlflow.experiment, experiment_id)
