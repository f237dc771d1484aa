"""Screenshots of the MLflow UI over a store, for the README (docs/img/).

    python docs/screenshots.py [--tracking-uri sqlite:///mlruns/mlflow.db] [--out docs/img]

Starts `mlflow ui` on a free port, opens the runs table, a run page, the sweep's parent run
(its summary figure) and the compare view of the sweep's runs in headless Chromium, and saves
PNGs. Needs Playwright (`pip install playwright`) and a Chromium (Debian: `apt install chromium`;
set CHROMIUM=/path/to/chrome elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ML = "workflowType=machine_learning"  # MLflow 3's UI otherwise opens its GenAI view


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the MLflow UI did not answer at {url} within {timeout:.0f}s")


def pick_runs(uri: str, experiment: str) -> tuple[str, str, list[str]]:
    """(experiment id, newest sweep parent run id, its children's run ids ordered by p)."""
    import mlflow

    c = mlflow.MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {uri}")
    parents = c.search_runs([exp.experiment_id], "tags.kind = 'sweep' and attributes.status = 'FINISHED'",
                            order_by=["attributes.start_time DESC"])
    if not parents:
        raise SystemExit("no FINISHED sweep in the store: run `python -m rethink -m corruption=0,0.2,0.5,1.0` first")
    parent = parents[0].info.run_id
    children = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    children.sort(key=lambda r: float(r.data.params.get("corruption.level", 0)))
    return exp.experiment_id, parent, [r.info.run_id for r in children]


def close_assistant(page) -> None:
    """Close MLflow's assistant side panel, if it is open (it takes a third of the page)."""
    panel = page.get_by_text("MLflow Assistant")
    if not panel.count():
        return
    box = panel.first.bounding_box()
    for button in page.get_by_role("button").all():
        b = button.bounding_box()
        if box and b and abs(b["y"] - box["y"]) < 20 and b["x"] > box["x"] + 250:  # the last icon of its header: X
            last = button
    if "last" in locals():
        last.click()
        time.sleep(1)


RUNS_TABLE_COLUMNS = ("corruption.level", "train/acc", "test/acc", "generalization_gap", "fit_epoch", "budget")
HIDE_COLUMNS = ("Dataset", "Source", "Models")  # shown by default; wide, and the same for every run
COMPARE_METRICS = ("generalization_gap", "test/acc", "train/acc")


def runs_table(page) -> None:
    """Expand the sweep's parent row (its jobs nest under it) and show the columns a reader wants."""
    expander = page.locator("[role=gridcell][col-id*='Run Name'] button[data-component-id*='runnamecellrenderer']")
    if expander.count():  # the sweep's parent row: its jobs nest under it
        expander.first.click()
        time.sleep(1.5)
    page.get_by_role("button", name="Columns").first.click()
    time.sleep(1)
    menu = page.locator("[role=menu], [role=dialog]").first
    for column in RUNS_TABLE_COLUMNS + HIDE_COLUMNS:
        item = menu.get_by_text(column, exact=True)
        if item.count():
            item.first.click()
            time.sleep(0.3)
    page.keyboard.press("Escape")
    time.sleep(1.5)


def compare_metrics(page) -> None:
    """Parallel coordinates of p against the gap and accuracies (the view opens on one metric)."""
    page.get_by_role("button", name="Clear All").click()
    time.sleep(0.5)
    selects = page.locator(".ant-select-selector, [role=combobox]")
    for index, names in ((0, ("corruption.level",)), (1, COMPARE_METRICS)):
        for name in names:
            selects.nth(index).click()
            page.keyboard.type(name)
            page.keyboard.press("Enter")
            time.sleep(0.5)
        page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    time.sleep(2)


def shoot(base: str, exp: str, parent: str, children: list[str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    runs = quote(json.dumps(children))
    pages = {
        "runs-table": f"#/experiments/{exp}/runs?{ML}",
        "run-page": f"#/experiments/{exp}/runs/{children[len(children) // 2]}?{ML}",
        "sweep-parent": f"#/experiments/{exp}/runs/{parent}/artifacts/sweep_summary.png?{ML}",
        "compare-runs": f"#/compare-runs?runs={runs}&experiments={quote(json.dumps([exp]))}&{ML}",
    }
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        for name, path in pages.items():
            page.goto(f"{base}/{path}")
            page.wait_for_load_state("load")
            time.sleep(6)  # the UI polls, so never goes idle: give charts and tables time to render
            close_assistant(page)
            if name == "runs-table":
                runs_table(page)
            if name == "compare-runs":
                compare_metrics(page)
            if name == "run-page" and page.get_by_text("Show more").count():  # the description's results table
                page.get_by_text("Show more").first.click()
                time.sleep(1)
            target = out / f"mlflow-{name}.png"
            page.screenshot(path=str(target))
            written.append(target)
        browser.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default=f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    ap.add_argument("--experiment", default="rethink")
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp, parent, children = pick_runs(args.tracking_uri, args.experiment)
    port = free_port()
    db_dir = Path(args.tracking_uri.removeprefix("sqlite:///")).parent
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
                               "--default-artifact-root", str(db_dir / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base)
        for f in shoot(base, exp, parent, children, out):
            print(f"wrote {f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
