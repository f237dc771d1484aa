"""The fault battery: one line per scenario, held (complete run or loud failure) or lost.

    python -m bench.faults [-k EXPR] [--json bench/results/faults.json]

Runs the real scenarios of tests/test_faults.py, tests/test_checkpoint.py, tests/test_stores.py and
the fault tests of tests/test_sweeps.py (real processes, a real SQLite store, a real `mlflow server`,
real signals) through pytest and reports each as `held` (it passed: the run completed with every
epoch's metrics, or ended FAILED/KILLED saying why with a non-zero exit) or `lost` (it failed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = ["tests/test_faults.py", "tests/test_checkpoint.py", "tests/test_stores.py",
         "tests/test_sweeps.py::test_killed_job_resumes_from_checkpoint_and_matches_uninterrupted_run",
         "tests/test_sweeps.py::test_a_job_killed_before_its_first_checkpoint_is_trained_again_in_a_new_run",
         "tests/test_sweeps.py::test_a_corrupted_checkpoint_is_set_aside_and_the_job_trains_afresh",
         "tests/test_sweeps.py::test_diverging_job_fails_with_reason_parent_counts_it_and_the_sweep_goes_on"]


class Outcomes:
    """A pytest plugin that keeps each test's outcome and duration."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.rows.append({"scenario": report.nodeid, "outcome": report.outcome,
                              "seconds": round(report.duration, 1)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default=None, help="only scenarios matching this pytest -k expression")
    ap.add_argument("--json", default=None, help="also write the lines as JSON here")
    args = ap.parse_args()
    plugin = Outcomes()
    t0 = time.perf_counter()
    pytest.main([*(str(REPO / f) for f in FILES), "-q", "-p", "no:cacheprovider", "--no-header", "-rN",
                 *(["-k", args.k] if args.k else [])], plugins=[plugin])
    print(f"\n# fault battery: {len(plugin.rows)} scenarios in {time.perf_counter() - t0:.0f} s")
    for r in plugin.rows:
        verdict = {"passed": "held", "skipped": "skipped"}.get(r["outcome"], "lost")
        print(f"{verdict:>7}  {r['seconds']:7.1f} s  {r['scenario'].split('/')[-1]}")
    held = sum(r["outcome"] == "passed" for r in plugin.rows)
    print(f"# tried {len(plugin.rows)}, held {held}, lost {sum(r['outcome'] == 'failed' for r in plugin.rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": plugin.rows}, indent=1))
    sys.exit(0 if held == len(plugin.rows) else 1)


if __name__ == "__main__":
    main()
