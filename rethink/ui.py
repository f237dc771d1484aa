"""The MLflow UI over the rethink store, landing on the experiment's runs table (`make ui`).

    python -m rethink.ui [--port 5000] [--host 127.0.0.1] [--tracking-uri URI] [--experiment rethink] [--open]

MLflow 3's UI opens on its GenAI pages unless the URL says `workflowType=machine_learning` (or the
browser remembers a choice), so this prints the URL of the runs table, then becomes `mlflow ui`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.request
import webbrowser

from rethink.run import track
from rethink.run.redact import split_credentials

log = logging.getLogger(__name__)


def base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server bound to host:port."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}/"


def landing_url(base: str, experiment_id: str | None) -> str:
    """The experiment's runs table in the machine-learning view (the UI's start page without one)."""
    base = base.rstrip("/") + "/"
    return f"{base}#/experiments/{experiment_id}/runs?workflowType=machine_learning" if experiment_id else base


def find_experiment(uri: str, name: str) -> str | None:
    """The id of experiment `name` in the store (tagged for the UI on the way), or None."""
    exp = track.retry(lambda: track.client(uri).get_experiment_by_name(name), what="get experiment")
    if exp is None:
        return None
    if any(exp.tags.get(k) != v for k, v in track.EXPERIMENT_TAGS.items()):
        track.tag_experiment(uri, exp.experiment_id)
    return exp.experiment_id


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow ui` over a SQLite store, its artifacts where rethink puts them (mlruns/artifacts)."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]
    if root := track.artifact_root(uri):
        cmd += ["--artifacts-destination", root]
    return cmd


def answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` with 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def open_when_up(url: str, timeout: float = 120) -> None:
    """In a forked child: wait for the server, open the browser at `url` (not if the server never
    answers), exit. The parent goes on to become the server."""
    if os.fork():
        return
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(url.split("#", 1)[0]):
                webbrowser.open(url)
                break
            time.sleep(0.5)
    finally:
        os._exit(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    ap = argparse.ArgumentParser(prog="python -m rethink.ui", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tracking-uri", default=None, help="default: sqlite:///<cwd>/mlruns/mlflow.db")
    ap.add_argument("--experiment", default="rethink")
    ap.add_argument("--open", action="store_true", help="open the browser once the server answers")
    return ap.parse_args(argv)


def serve(uri: str, url: str, args: argparse.Namespace) -> None:
    """Become `mlflow ui` over the store (with --open, a forked child opens the browser once it answers)."""
    if args.open:
        open_when_up(url)
    # MLflow's background job runner (GenAI scorers, trace rollups: nothing a runs table needs) would
    # start several worker processes beside the server; set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    cmd = server_command(uri, args.host, args.port)
    os.execv(cmd[0], cmd)


def main(argv: list[str] | None = None) -> None:
    """Print the landing URL, then serve the store (a server URI: print its landing URL only)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    uri = args.tracking_uri or track.default_tracking_uri()
    experiment_id = find_experiment(uri, args.experiment)
    remote = uri.startswith(("http://", "https://"))  # a server serves its own UI
    url = landing_url(split_credentials(uri)[0] if remote else base_url(args.host, args.port), experiment_id)
    if experiment_id is None:
        print(f"no experiment {args.experiment!r} in {split_credentials(uri)[0]} yet (run a sweep first)", flush=True)
    print(f"MLflow UI of {args.experiment!r} (runs table): {url}", flush=True)
    if not remote:
        serve(uri, url, args)
    elif args.open:
        webbrowser.open(url)


if __name__ == "__main__":
    main()
