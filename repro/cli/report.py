"""Write a Markdown report (curves, Table 6-style results, verdicts, deviations) of a run directory.

`repro report RUN_DIR [--out reports/<id>]`; RUN_DIR is what `repro reproduce` wrote, or a run
folder (`repro import-run LOG --out RUN --model M`) or a folder of them. Exit status: 0 every
check the preset runs passed; 1 a check failed (an unfinished matrix fails completeness: the
report is written, marked INCOMPLETE); 3 none failed but one is not assessed, partial,
inconclusive or not assessable (repro.claims.exit_status); 2 no report (bad input, or --out
cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro.claims import exit_status
from repro.errors import ReproError
from repro.report.report import write_report_verdicts
from repro.store import read_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="a `repro reproduce` folder, a run folder or a folder of runs",
    )
    parser.add_argument("--out", type=Path, default=None, help="default reports/<run id>")


def run(args: argparse.Namespace) -> int:
    try:
        path, verdicts = write_report_verdicts(args.run_dir, args.out)
    except OSError as exc:  # a read-only or full --out (atomic writes say so themselves)
        where = exc.filename or args.out or "reports/"
        raise ReproError(
            f"cannot write the report to {where} ({exc.strerror or exc}); choose a writable "
            "--out folder or free disk space"
        ) from None
    print(f"report: {path}")
    summary = read_summary(path.parent)  # the refreshed summary the report was written from
    waiting = [
        f"{m}/seed{s}"
        for m, stats in summary["models"].items()
        for s, seed in stats.get("seeds", {}).items()
        if not seed.get("finished")
    ]
    if waiting:
        print(
            f"repro report: INCOMPLETE: {len(waiting)} run(s) have not finished "
            f"({', '.join(waiting[:4])}{', ...' if len(waiting) > 4 else ''}): the verdicts "
            "that rest on them are inconclusive; "
            + (
                "if their schedule ended, import them again with --total-iterations N --finished"
                if summary.get("imported_runs")
                else "the report is marked INCOMPLETE; finish the matrix and report again"
            ),
            file=sys.stderr,
        )
    return exit_status(verdicts)
