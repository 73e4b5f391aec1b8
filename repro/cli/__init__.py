"""The `repro` command line: one module per subcommand in this package (``repro.cli.<command>``),
each with ``add_arguments(parser)`` and ``run(args) -> int``; options several commands share are
defined once in :mod:`repro.cli.options`.

Bad input raises :class:`repro.errors.ReproError`, which becomes one line on stderr and exit
status 2 (the traceback is shown only with ``--debug``, before or after the command).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from repro.errors import ReproError

# subcommand -> (module, one-line help). Order is the order shown by `repro --help`.
SUBCOMMANDS: dict[str, str] = {
    "params": "parameter and FLOP counts of every model vs the paper",
    "data": "download and verify CIFAR-10",
    "train": "train a model with a named recipe into a resumable run folder",
    "evaluate": "error, loss and per-class accuracy of a checkpoint",
    "verify": "map anyone's checkpoint onto the paper's nets by structure; error, CI, Fig. 7",
    "reproduce": "train the reproduction matrix (experiment x preset x seeds)",
    "import-run": "import another code base's training logs as a run folder or matrix",
    "report": "Markdown report of a reproduction run, with Fig. 6-style curves",
    "calibration": "what each verdict can detect: operating characteristics, tolerance model",
    "analyze": "analyses of trained models (layer responses, Fig. 7)",
    "env": "versions, devices, torch.compile and data presence",
    "estimate": "time training steps, project a schedule's time/memory",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repro",
        description="Reproduce and verify He et al. 2016 (Deep Residual Learning) on CIFAR-10.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"repro.cli.{name.replace('-', '_')}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip().splitlines()[0],
        )
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors",
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ReproError as exc:
        if args.debug:
            raise
        print(f"repro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"repro {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
