"""Start-up cost of a job: imports, and process launch -> first epoch of a real 1-epoch job.

    python -m bench.startup [--repeats N] [--json PATH]     # default: 5 / 3 repeats, bench/results/startup-cpu.json

Each figure comes from fresh processes (nothing warm but the OS page cache), median over the repeats:
  - `python -c "import rethink.jobs.training"` (the training job's modules, imported once Hydra has composed), with
    `python -c pass` and `python -c "import torch"` for reference;
  - `python -m rethink dataset.train_size=10000 trainer.max_epochs=1` into a new SQLite store in a
    temporary directory: the time from launch to the per-epoch table header that rethink/jobs/training.py logs
    just before training (interpreter, imports, Hydra, store creation, data from the cache, model,
    MLflow run), to the first epoch's row, and to the process's exit.
RETHINK_DATA (default: ./data) must hold cifar10/; the first job may decode the data into its cache
(data/.rethink-cache), which makes that one sample slower: every sample is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPORTS = {"python -c pass": "pass", "import torch": "import torch", "import rethink.jobs.training": "import rethink.jobs.training"}


def env() -> dict[str, str]:
    """This checkout's rethink first on the path (the jobs run in a temporary directory), the data, unbuffered."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    data = os.environ.get("RETHINK_DATA", str(REPO / "data"))
    return os.environ | {"PYTHONPATH": path, "RETHINK_DATA": str(Path(data).resolve()), "PYTHONUNBUFFERED": "1"}


def import_seconds(stmt: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", stmt], check=True, env=env(), cwd=REPO)
    return time.perf_counter() - t0


def torch_version() -> str:
    """torch.__version__ (with its local tag, e.g. +cu130), from a subprocess: this one never imports torch."""
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], check=True, env=env(),
                          capture_output=True, text=True).stdout.strip()


def is_header(line: str) -> bool:
    """The per-epoch table header (`epoch step lr loss train_acc ...`), after the log record's prefix."""
    if "epoch" not in line or "train_acc" not in line:
        return False
    return not re.search(r"\d", line[line.index("epoch"):])


def is_row(line: str) -> bool:
    """A row of that table: the message (after the log prefix's ` - `) starts with the epoch and step numbers."""
    return bool(re.match(r"\s*\d+\s+\d+\s+\d", line.split(" - ", 1)[-1]))


def job_seconds(timeout: float = 900) -> dict[str, float]:
    """One `python -m rethink` 1-epoch job: seconds from launch to its table header, first epoch row, exit."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "rethink", "dataset.train_size=10000", "trainer.max_epochs=1",
               f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/run"]
        out, times = [], {}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        try:
            for line in proc.stdout:
                t = time.perf_counter() - t0
                out.append(line)
                if "to_first_epoch" not in times and is_header(line):
                    times["to_first_epoch"] = t
                elif "to_first_epoch" in times and "to_first_epoch_row" not in times and is_row(line):
                    times["to_first_epoch_row"] = t
                if t > timeout:
                    raise TimeoutError(f"job still running after {timeout:.0f} s")
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        times["total"] = time.perf_counter() - t0
    if rc != 0 or "to_first_epoch_row" not in times:
        sys.exit(f"the job failed (exit {rc}) or logged no epoch table:\n{''.join(out[-30:])}")
    return times


def summary(samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "samples_s": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=None, help="fresh processes per figure (default: 5 imports, 3 jobs)")
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "startup-cpu.json"))
    args = ap.parse_args()
    n_imports, n_jobs = (args.repeats, args.repeats) if args.repeats else (5, 3)
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "torch": torch_version(), "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "loadavg_at_start": os.getloadavg(),
            "rethink": str(REPO), "data": env()["RETHINK_DATA"]}
    print(f"# python {info['python']}  torch {info['torch']}  nproc {info['nproc']}  "
          f"load {info['loadavg_at_start'][0]:.1f}  {info['date']}")
    print(f"{'measurement':<44}{'median':>9}{'min':>9}{'max':>9}   n")
    imports = {}
    for name, stmt in IMPORTS.items():
        import_seconds(stmt)  # warm the page cache: every sample then reads the files from memory
        imports[name] = summary([import_seconds(stmt) for _ in range(n_imports)])
        s = imports[name]
        print(f"{name:<44}{s['median_s']:>8.2f}s{s['min_s']:>8.2f}s{s['max_s']:>8.2f}s{n_imports:>4}", flush=True)
    runs = [job_seconds() for _ in range(n_jobs)]
    job = {key: summary([r[key] for r in runs]) for key in ("to_first_epoch", "to_first_epoch_row", "total")}
    labels = {"to_first_epoch": "1-epoch job: launch -> first epoch starts", "to_first_epoch_row": "  ... -> first epoch's row",
              "total": "  ... -> exit (total wall time)"}
    for key, label in labels.items():
        s = job[key]
        print(f"{label:<44}{s['median_s']:>8.2f}s{s['min_s']:>8.2f}s{s['max_s']:>8.2f}s{n_jobs:>4}")
    info["loadavg_at_end"] = os.getloadavg()  # a shared machine: other work inflates every figure
    job["command"] = "python -m rethink dataset.train_size=10000 trainer.max_epochs=1 (mlp_1x512, cifar10, scale=cpu)"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "imports": imports, "job": job}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
