"""Verify anyone's CIFAR-10 checkpoint: which of the paper's nets it is, its test error, Fig. 7.

The file (a bare state_dict, ``{"state_dict": ...}``, ``{"model": ...}``, ``{"net": ...}``,
``module.``-prefixed keys) is read without running its code and mapped onto the reference nets by
structure: layer types and shapes, not key names. The normalisation is required (``--normalize``
or ``--mean/--std``) unless ``CHECKPOINT.json`` beside the file says it, or the file is a
resnet-repro checkpoint (which records its own, the per-pixel mean image included). Structure is
checked before the data set is read, so a file that is no ResNet is refused at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from repro.cli.options import add_data_root, add_device, add_json
from repro.data import load_cifar10, resolve_data_root
from repro.devices import resolve_device
from repro.errors import ReproError
from repro.foreign.layouts import PADDINGS, SUBSAMPLINGS, parse_layout
from repro.foreign.normalizations import PRESETS
from repro.foreign.verify import (
    NORMALIZATIONS,
    NormalizationRow,
    chosen_normalization,
    load_foreign,
    readings,
    verify,
)
from repro.tables import text_table
from repro.train.checkpoint import TRUST_FLAG


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt/.pth/.th file")
    parser.add_argument(
        "--normalize",
        choices=NORMALIZATIONS,
        default=None,
        help="how the net's inputs were normalised (required unless --mean/--std or "
        "CHECKPOINT.json says): the training images' mean image (per-pixel-mean) or "
        + "; ".join(f"{k}: {v[2]}" for k, v in PRESETS.items()),
    )
    parser.add_argument(
        "--mean",
        default=None,
        metavar="R,G,B",
        help="per-channel mean the net was trained with (with --std), on the 0-1 scale or the "
        "0-255 scale (values above 1 are read as 0-255)",
    )
    parser.add_argument(
        "--std", default=None, metavar="R,G,B", help="per-channel std (with --mean), same scales"
    )
    parser.add_argument(
        "--layout",
        default=None,
        metavar="PAD,SUBSAMPLE",
        help="read an option-A ResNet in this shortcut layout only (PAD one of "
        f"{', '.join(PADDINGS)}; SUBSAMPLE one of {', '.join(SUBSAMPLINGS)}); default: try all",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="the reference net to read the weights as (e.g. plain20 where resnet20 also fits)",
    )
    add_data_root(parser)
    parser.add_argument(
        "--trunk-only",
        action="store_true",
        help="for a head that is not 10-way: structure, params and layer responses, no test error",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="use the first N test images only"
    )
    parser.add_argument("--plot", default=None, metavar="PNG", help="write Fig. 7 for the net")
    parser.add_argument(
        TRUST_FLAG,
        dest="trust_pickle",
        action="store_true",
        help="allow full unpickling (a pickled module), which can run code the file carries: "
        "only for files from a source you trust",
    )
    add_device(parser)
    add_json(parser)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"


def _check_row(checks: list[NormalizationRow]) -> list[list[str]]:
    """The chosen reading's error under each standard normalisation, as one row (or none)."""
    if not checks:
        return []
    shown = ", ".join(f"{c['name']} {c['error']:.1f} %" for c in checks)
    return [["norm. check", f"{shown} (first {checks[0]['n']} test images)"]]


def format_report(out: dict[str, Any], summary: str) -> str:
    """The table: what the net is, how that was decided, its error and its layer responses."""
    p, norm, test, fig7 = out["params"], out["normalization"], out["test"], out["fig7"]
    paper = (
        "no paper figure"
        if p["paper_m"] is None
        else (f"{p['paper_source']}: {p['paper_m']} M, {'agrees' if p['agrees'] else 'DIFFERS'}")
    )
    shown = norm["shown"]
    rows: list[list[Any]] = [
        ["checkpoint", f"{out['checkpoint']} ({out['found']})"],
        ["model", out["model"]],
        ["decided by", out["decided_by"]],
        ["shortcut", out["shortcut_meaning"]],
        ["params", f"{p['exact']:,} ({paper})"],
        ["mapped", f"{out['mapped']['layers']} layers, {out['mapped']['tensors']} tensors"],
        *(["note", note] for note in out["notes"]),
        ["normalise", f"{shown} ({norm['source']})"],
        *_check_row(out["normalization_check"]),
        ["data", summary],
    ]
    if test:
        lo, hi = test["ci95"]
        rows.append(
            [
                "test error",
                f"{test['error']:.2f} % (95 % CI {lo:.2f}-{hi:.2f} %, "
                f"{test['ci_method']}; {test['n']} images), loss {test['loss']:.4f}",
            ]
        )
    else:
        rows.append(["test error", "not measured (--trunk-only)"])
    rows.append(
        [
            "Fig. 7",
            f"mean response std {fig7['mean_response_std']:.4f} over "
            f"{len(fig7['layers'])} layers ({fig7['num_images']} images)",
        ]
    )
    lines = [text_table(["", "verify"], rows)]
    if test:
        acc = [[c, _percent(a)] for c, a in test["per_class_accuracy"].items()]
        lines += ["", text_table(["class", "accuracy"], acc, "lr")]
    stds = " ".join(f"{layer['std']:.3f}" for layer in fig7["layers"])
    lines += ["", f"layer response stds, in network order: {stds}"]
    return "\n".join(lines)


def _warn_if_overridden(normalize: str | None, recorded: Any, path: Path) -> None:
    """One warning line when --normalize differs from what a resnet-repro checkpoint records."""
    if normalize is not None and recorded is not None and normalize != recorded.name:
        print(
            f"repro verify: warning: --normalize {normalize} overrides the {recorded.name} "
            f"normalisation {path} records; the error is measured on inputs the net was not "
            "trained with (drop --normalize to use the recorded one)",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ReproError(f"--limit must be >= 1, got {args.limit}")
    try:
        layout = parse_layout(args.layout) if args.layout else None
    except ValueError as exc:
        raise ReproError(str(exc)) from None
    device = resolve_device(args.device)
    path = Path(args.checkpoint)
    foreign = load_foreign(path, args.trust_pickle)
    found = readings(foreign, path, args.model, layout)  # structure first, before any data
    if foreign.recorded is None or args.normalize or args.mean or args.std:
        chosen_normalization(args.normalize, path, args.mean, args.std)
    _warn_if_overridden(args.normalize, foreign.recorded, path)
    data = load_cifar10(resolve_data_root(args.data_root))
    out = verify(
        path,
        args.normalize,
        data,
        model=args.model,
        layout=layout,
        mean=args.mean,
        std=args.std,
        device=device,
        limit=args.limit,
        trunk_only=args.trunk_only,
        foreign=foreign,
        found=found,
    )
    if args.plot:
        from repro.analysis.plot import ResponseCurve, plot_layer_response  # matplotlib: seconds

        curve = ResponseCurve(
            out["model"],
            None,
            out["shortcut"] is not None,
            [layer["std"] for layer in out["fig7"]["layers"]],
        )
        try:
            plot_layer_response([curve], args.plot, title=f"Layer responses of {out['model']}")
        except OSError as exc:
            raise ReproError(f"--plot {args.plot} cannot be written: {exc.strerror}") from None
    for warning in out["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(out, indent=2) if args.json else format_report(out, data.summary()))
    return 0
