"""Import another code base's training logs as a run folder (or a matrix) that the claims read.

`repro import-run SRC --out RUN --model resnet20 --seed 0` reads one log (a per-epoch
``metrics.json`` list, a CSV, a Caffe training log, or TensorBoard event files when tensorboard is
installed);
`repro import-run SRC_ROOT --out ROOT --experiment core` imports ``SRC_ROOT/<model>/seed<k>/``
and writes summary.json, so `repro report ROOT` and `pytest acceptance --run-dir ROOT` work.
Nothing is faked: no checkpoint is written, and a claim that needs what the logs lack is
"not assessable". See :mod:`repro.foreign.importer` for the column mapping and scales.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from repro.errors import ReproError
from repro.foreign.importer import import_matrix, import_run, parse_mapping, parse_recipe
from repro.foreign.log_formats import LOG_FORMATS, tensorboard_available
from repro.models import list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help="a log file or folder (or a root)")
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    parser.add_argument("--model", default=None, help="the paper's net the logs trained")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument(
        "--experiment", default=None, help="import SRC/<model>/seed<k>/ as a matrix"
    )
    parser.add_argument("--preset", default="common", help="the matrix's preset (default common)")
    parser.add_argument(
        "--format", choices=tuple(LOG_FORMATS), default=None, help="default: from the name"
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OURS=THEIRS",
        help="read our metric from their column, e.g. test_error=val_err, train_acc=acc "
        "(accuracies become 100 - acc)",
    )
    parser.add_argument(
        "--scale",
        choices=("auto", "percent", "fraction"),
        default="auto",
        help="errors/accuracies as percent or 0-1 fractions (auto: fractions if all <= 1)",
    )
    parser.add_argument("--iterations-per-epoch", type=int, default=None, dest="per_epoch")
    parser.add_argument("--total-iterations", type=int, default=None, help="the schedule's end")
    parser.add_argument(
        "--finished", action="store_true", help="the logs end where the schedule ended"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a known recipe field"
    )


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ReproError(f"--seed must be >= 0, got {args.seed}")
    for flag, value in (("--iterations-per-epoch", args.per_epoch), ("--total-iterations",
                        args.total_iterations)):  # fmt: skip
        if value is not None and value < 1:
            raise ReproError(f"{flag} must be >= 1, got {value}")
    opts = {
        "format": args.format,
        "mapping": parse_mapping(args.map),
        "scale": args.scale,
        "per_epoch": args.per_epoch,
        "total_iterations": args.total_iterations,
        "finished": args.finished,
        "recipe": parse_recipe(args.set),
    }
    if args.format == "tensorboard" and not tensorboard_available():
        raise ReproError("TensorBoard event files need tensorboard: pip install tensorboard")
    if args.experiment is not None:
        summary = import_matrix(args.src, args.out, args.experiment, args.preset, opts)
        runs = sum(len(m["seeds"]) for m in summary["models"].values())
        print(f"imported {runs} runs into {args.out} (summary.json; no checkpoints)")
        return 0
    if args.model is None:
        raise ReproError("name the net the logs trained: --model M (e.g. resnet20)")
    if args.model not in list_models():
        close = difflib.get_close_matches(args.model, list_models(), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ReproError(f"--model {args.model!r} is not one of the paper's nets{hint}")
    config = import_run(args.src, args.out, args.model, args.seed, opts)
    imported = config["imported"]
    print(f"imported {imported['source']} ({imported['format']}) into {args.out}")
    print(f"scale: {imported['scale']}; lacks: {', '.join(imported['lacks'])}")
    return 0
