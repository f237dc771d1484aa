"""`python -m rethink.report`: the command line that writes the report folder and logs it to MLflow."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rethink.report import log_report, write_report
from rethink.report.runs import STANDARD
from rethink.run import track


def main() -> None:
    """Parse the arguments, write the report, log its files as a `rethink-reports` run, list them."""
    ap = argparse.ArgumentParser(prog="python -m rethink.report", description="Build the paper's tables and figures from MLflow runs.")
    ap.add_argument("--tracking-uri", default=None, help="default: sqlite:///<cwd>/mlruns/mlflow.db")
    ap.add_argument("--experiment", default="rethink")
    ap.add_argument("--scale", default=None, help="only runs made at this scale (cpu | paper)")
    ap.add_argument("--budget", choices=("standard", "any"), default="standard",
                    help="standard (default): only runs that ran their preset's budget; any: also custom and "
                         "untagged runs (a smoke check of the pipeline, not the paper's protocol)")
    ap.add_argument("--out", default=None, help="default: reports/<scale or all>")
    ap.add_argument("--notes", default=None, help="a Markdown file appended to the report's README (provenance)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uri = args.tracking_uri or track.default_tracking_uri()
    out = Path(args.out or f"reports/{args.scale or 'all'}")
    extra = Path(args.notes).read_text() if args.notes else ""
    files = write_report(uri, out, args.experiment, args.scale, extra, STANDARD if args.budget == "standard" else None)
    run_id = log_report(uri, files, out.name)
    print(f"wrote {len(files)} files to {out}/ (also logged to MLflow run {run_id}):")
    for f in files:
        print(f"  {f}")


if __name__ == "__main__":
    main()
