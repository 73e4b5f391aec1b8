"""Parameter and FLOP counts of every model, against the paper's Tables 1 and 6.

Parameters are counted exactly; forward multiply-adds per image are counted with
torch.utils.flop_counter. Exit status 1 if any model disagrees with the paper.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from repro.cli.options import add_json
from repro.errors import ReproError
from repro.models.complexity import (
    PARAMS_MODELS,
    Complexity,
    ParamsClaim,
    complexity,
    paper_figures,
    params_claims,
)
from repro.tables import text_table


def _verdict(match: bool | None) -> str:
    return "-" if match is None else ("yes" if match else "NO")


def format_table(rows: list[Complexity]) -> str:
    header = ("model", "params", "reference", "match", "MACs/image", "paper", "match")
    cells = [
        (
            r.model,
            f"{r.params:,}",
            "-" if r.paper_params is None else f"{r.paper_params}M",
            _verdict(r.params_match),
            f"{r.macs / 1e6:,.1f}M",
            "-" if r.paper_macs is None else f"{r.paper_macs / 1e9:.1f}G",
            _verdict(r.macs_match),
        )
        for r in rows
    ]
    return text_table(header, cells, align="lrrrrrr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="models to show (default: all)")
    add_json(parser, "print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    names = args.models or PARAMS_MODELS
    figures = paper_figures()
    try:
        rows = [complexity(name, figures) for name in names]
    except ValueError as exc:
        raise ReproError(str(exc)) from None
    if args.json:
        keys = (
            "model",
            "params",
            "paper_params",
            "macs",
            "paper_macs",
            "params_match",
            "macs_match",
        )
        print(json.dumps([{k: asdict(r)[k] for k in keys} for r in rows], indent=2))
    else:
        print(format_table(rows))
        print(
            "\nparams: exact count vs Table 6 for the CIFAR nets (plain nets: their option-A "
            "ResNet's) and, for the ImageNet nets, torchvision's counts (Table 1 prints none);\n"
            "MACs: forward multiply-adds per image (32x32 CIFAR, 224x224 ImageNet) vs Table 1"
        )
    mismatched = [r.model for r in rows if r.params_match is False or r.macs_match is False]
    claims = [c for c in params_claims() if c.model in names]
    if not args.json:
        print(*(claim_line(c) for c in claims), sep="\n")
    mismatched += [c.claim for c in claims if not c.holds]
    if mismatched:
        print(f"repro params: disagrees with the paper: {', '.join(mismatched)}")
        return 1
    return 0


def claim_line(c: ParamsClaim) -> str:
    """'claim resnet110_fewer_params: resnet110 1,727,962 < FitNet [35] ... 2.5M, ...: holds'."""
    others = ", ".join(f"{label} {millions:g}M" for label, millions in c.others)
    verdict = "holds" if c.holds else "FAILS"
    return f"Table 6 claim {c.claim}: {c.model} {c.params:,} params < {others}: {verdict}"
