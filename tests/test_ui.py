"""What a person meets first: `python -m rethink --help` and `make ui` (`python -m rethink.ui`), which
lands on the experiment's runs table of MLflow's UI, not on its GenAI pages."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO, free_port

from rethink import ui
from rethink.run import track


def test_help_explains_the_corruption_shorthand_examples_and_where_runs_go():
    res = subprocess.run([sys.executable, "-m", "rethink", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "corruption=<p>" in out and "corruption=labels corruption.level=<p>" in out
    assert "python -m rethink -m corruption=0,0.2,0.5,1.0" in out
    assert "model=alexnet regularizer=[weight_decay,random_crop]" in out and "experiment=table1 scale=paper" in out
    assert re.search(r"^model: alexnet, inception", out, re.M)  # Hydra's $APP_CONFIG_GROUPS, filled in
    assert "mlruns/mlflow.db" in out and "make ui" in out and "--cfg job" in out


def test_landing_url_is_the_runs_table_in_the_machine_learning_view():
    assert ui.landing_url(ui.base_url("0.0.0.0", 5001), "7") == \
        "http://127.0.0.1:5001/#/experiments/7/runs?workflowType=machine_learning"
    assert ui.landing_url("http://mlflow.example:5000", None) == "http://mlflow.example:5000/"


def test_make_ui_passes_the_port():
    res = subprocess.run(["make", "-n", "ui", "PORT=5123", "PY=python"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert re.search(r"python -m rethink\.ui .*--port 5123", res.stdout), res.stdout


def read_until(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> re.Match:
    deadline = time.monotonic() + timeout
    while not (m := re.search(pattern, path.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, path.read_text()[-3000:]
        time.sleep(0.2)
    return m


def group_ends(pgid: int, timeout: float = 30) -> bool:
    """Whether every process of the group is gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_ui_serves_the_store_prints_the_landing_url_opens_it_and_ends_on_sigterm(tmp_path):
    uri, port = f"sqlite:///{tmp_path}/mlruns/mlflow.db", free_port()
    experiment_id = track.ensure_experiment(uri, "rethink")
    browser = tmp_path / "browser.sh"  # webbrowser runs $BROWSER with the URL
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {tmp_path}/opened\n")
    browser.chmod(0o755)
    log = tmp_path / "ui.log"
    env = os.environ | {"PYTHONPATH": str(REPO), "BROWSER": f"{browser} %s"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rethink.ui", "--port", str(port), "--tracking-uri", uri, "--open"],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = read_until(log, r"(http://127\.0\.0\.1:\d+/#\S+)", proc).group(1)
        assert url == f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        while not (tmp_path / "opened").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "opened").read_text().strip() == url
        tags = track.client(uri).get_experiment(experiment_id).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"  # a store made before rethink tagged it
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert group_ends(proc.pid), "the server left processes behind"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # what the server started, should anything be left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
