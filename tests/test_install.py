"""The `rethink` console script works from a normal (non-editable) wheel install, in any directory."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO, cli_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the rethink wheel; its dependencies come from this
    environment's site-packages through PYTHONPATH (which does not run the editable install's hook)."""
    tmp = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "wheel"), str(REPO)], check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, timeout=300)
    (wheel,) = (tmp / "wheel").glob("rethink-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(tmp / "venv" / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=600)
    return tmp / "venv"


def run_script(venv: Path, args: list[str], cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    env = cli_env(data_root, PYTHONPATH=sysconfig.get_paths()["purelib"])
    return subprocess.run([str(venv / "bin" / "rethink"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_console_script_help_from_a_wheel_install(installed, tmp_path, data_root):
    res = run_script(installed, ["--help"], tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "corruption: gaussian, labels, random_labels, random_pixels, shuffled_pixels" in res.stdout


def test_console_script_trains_from_a_wheel_install_in_any_directory(installed, tmp_path, data_root):
    res = run_script(installed, ["corruption=0.5", "dataset.train_size=300", "dataset.test_size=100",
                                 "trainer.max_epochs=1", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
                     tmp_path, data_root)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "p=0.5 mlp_1x512 cpu: stopped (max_epochs) after 1 epochs" in out
    assert str(installed) in subprocess.run([str(installed / "bin" / "python"), "-c", "import rethink; print(rethink.__file__)"],
                                            env={"PYTHONPATH": sysconfig.get_paths()["purelib"]}, cwd=tmp_path,
                                            capture_output=True, text=True).stdout  # the wheel's copy, not the source
