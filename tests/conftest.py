"""Shared fixtures: the real data (extracted by `make data` / .ci/run), a runner for the CLI, the
composed Hydra configuration, and the `gpu` marker's skip (markers: pyproject.toml)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RETHINK_DATA", REPO / "data")).resolve()
CONF = REPO / "rethink" / "conf"
# The paper's parameter counts (Zhang et al., Table 1) of every model in rethink/conf/model/.
PARAMS = {"mlp_1x512": 1_209_866, "mlp_3x512": 1_735_178, "alexnet": 1_387_786,
          "inception": 1_649_402, "inception_nobn": 1_649_402,
          "inception_v3": 27_161_264}  # ImageNet (Table 2): torchvision's, auxiliary head on, 1,000 classes (not in the paper)


def composed(*overrides: str, return_hydra_config: bool = False):
    """The job configuration `python -m rethink OVERRIDES` composes (rethink/conf/config.yaml);
    with `return_hydra_config` the `hydra` node too (mode, sweeper params)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def pytest_configure(config):
    """Under pytest-xdist (`-n N`, pyproject.toml's addopts) each of the N workers, and every job it starts,
    gets cores/N threads: the parallel tests share the cores instead of oversubscribing them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, threads)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip, with the reason, where CUDA is not available (torch imported only if any)."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu test: torch.cuda.is_available() is False (no CUDA device or build)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root holding cifar10/ (ImageFolder JPEG tree) and MNIST/raw."""
    if not (DATA / "cifar10" / "train").is_dir() or not (DATA / "MNIST" / "raw").is_dir():
        pytest.fail(f"test data missing under {DATA}: run `make data` (extracts ../shared/data archives)")
    return DATA


def cli_env(data_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: the test data, unbuffered output, plus `extra`."""
    env = os.environ | {"RETHINK_DATA": str(data_root), "PYTHONUNBUFFERED": "1"} | extra
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def cli_cmd(args: list[str], cwd: Path, uri: str | None = None) -> list[str]:
    """`python -m rethink ARGS` logging to `uri` (default: a SQLite store under `cwd`)."""
    return [sys.executable, "-m", "rethink", *args, f"mlflow.tracking_uri={uri or f'sqlite:///{cwd}/mlruns/mlflow.db'}"]


def run_cli(args: list[str], cwd: Path, data_root: Path, timeout: int = 300, uri: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m rethink ARGS` in a subprocess, with its own MLflow store under `cwd` (or `uri`)."""
    return subprocess.run(cli_cmd(args, cwd, uri), cwd=cwd, env=cli_env(data_root, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)


def search_runs(cwd: Path, experiment: str = "rethink", uri: str | None = None, parents: bool = False):
    """The job runs (with `parents`: also the sweeps' parent runs) of the temporary store (or of
    `uri`) as a pandas DataFrame (via mlflow.search_runs)."""
    import mlflow

    mlflow.set_tracking_uri(uri or f"sqlite:///{cwd}/mlruns/mlflow.db")
    runs = mlflow.search_runs(experiment_names=[experiment])
    if parents or "tags.kind" not in runs:
        return runs
    return runs[runs["tags.kind"] != "sweep"].reset_index(drop=True)


def wait_for(what: str, ok: Callable[[], Any], timeout: float = 300, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> Any:
    """Poll `ok()` until it is truthy and return that value; fail if `proc` ends first or `timeout` passes,
    with the tail of `log` (what the processes printed) in the message, so a failure says why."""
    deadline = time.monotonic() + timeout
    while not (found := ok()):
        ended = proc is not None and proc.poll() is not None
        if ended or time.monotonic() > deadline:
            printed = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            why = f"the process ended (exit {proc.returncode})" if ended else f"timed out after {timeout:.0f} s"
            pytest.fail(f"{why} waiting for {what}; it printed:\n{printed}")
        time.sleep(0.1)
    return found


def free_port() -> int:
    """A TCP port nobody listens on now (on 127.0.0.1)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(store: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` over `store`/mlflow.db (artifacts under `store`), in its own
    process group (it runs uvicorn as a child); returns once /health answers."""
    import time
    import urllib.request

    store.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
           "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    log = open(store / "server.log", "a")
    proc = subprocess.Popen(cmd, cwd=store, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_mlflow_server(proc)
            pytest.fail(f"mlflow server did not start: {(store / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)


def stop_mlflow_server(proc: subprocess.Popen, sig: int | None = None) -> None:
    """Stop the server's whole process group (SIGTERM, then SIGKILL for what is left; or just `sig`)."""
    import signal

    for s in ((sig,) if sig else (signal.SIGTERM, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on 127.0.0.1 over a SQLite store in tmp_path (artifacts served from tmp_path);
    yields its http URI and always stops it."""
    port = free_port()
    proc = start_mlflow_server(tmp_path / "server", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_mlflow_server(proc)


def make_image_tree(root: Path, classes: int = 10, train: int = 20, val: int = 5, sizes: tuple[int, int] = (80, 120),
                    test_dir: str = "val", seed: int = 0, picture: str = "colour") -> Path:
    """An ImageFolder tree made here: `<root>/train/<wnid>/*.JPEG` and `<root>/<test_dir>/<wnid>/*.JPEG`, images of
    random height and width in `sizes` (one size when sizes[0] == sizes[1]). `picture`: "colour", a class colour
    plus noise (the class is learnable); "scene", a smooth random picture plus noise, every image distinct as
    natural images are (bench/streaming.py's images), so that random labels can be memorized."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), (test_dir, val)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = rng.integers(sizes[0], sizes[1] + 1, 2)
                if picture == "scene":
                    base = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
                    img = np.asarray(Image.fromarray(base).resize((int(w), int(h)), Image.BICUBIC), dtype=np.int16)
                    img = (img + rng.integers(-24, 25, (h, w, 3), dtype=np.int16)).clip(0, 255).astype(np.uint8)
                else:
                    colour = np.array([c * 25 % 256, c * 70 % 256, (255 - c * 25) % 256], dtype=np.float64)
                    img = (colour + rng.normal(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{split}_{c}_{i}.JPEG", quality=90)
    return root


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory) -> Path:
    """10 classes x 20 training and 5 validation JPEGs of 80-120 px (ImageNet's layout), made once per session."""
    return make_image_tree(tmp_path_factory.mktemp("imagenet") / "tree")
