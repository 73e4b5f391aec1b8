"""Write a Markdown report (curves, Table 6-style results, verdicts, deviations) of a run directory.

`repro report RUN_DIR [--out reports/<id>]`; RUN_DIR is what `repro reproduce` wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.report.report import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `repro reproduce` folder")
    parser.add_argument("--out", type=Path, default=None, help="default reports/<run id>")


def run(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir, args.out)
    print(f"report: {path}")
    return 0
