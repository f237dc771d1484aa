"""Shared fixtures: the real data (extracted by `make data` / .ci/run) and a runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RETHINK_DATA", REPO / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root holding cifar10/ (ImageFolder JPEG tree) and MNIST/raw."""
    if not (DATA / "cifar10" / "train").is_dir() or not (DATA / "MNIST" / "raw").is_dir():
        pytest.fail(f"test data missing under {DATA}: run `make data` (extracts ../shared/data archives)")
    return DATA


def run_cli(args: list[str], cwd: Path, data_root: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m rethink ARGS` in a subprocess, with its own MLflow store under `cwd`."""
    env = os.environ | {"RETHINK_DATA": str(data_root), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "rethink", *args, f"mlflow.tracking_uri=sqlite:///{cwd}/mlruns/mlflow.db"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def search_runs(cwd: Path, experiment: str = "rethink"):
    """All runs of the temporary store as a pandas DataFrame (via mlflow.search_runs)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlruns/mlflow.db")
    return mlflow.search_runs(experiment_names=[experiment])
