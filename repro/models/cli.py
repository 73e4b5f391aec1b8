"""Parameter and FLOP counts of every model, against the paper's Tables 1 and 6.

Parameters are counted exactly; forward multiply-adds per image are counted with
torch.utils.flop_counter. Exit status 1 if any model disagrees with the paper.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from repro.baselines import load_baseline
from repro.errors import ReproError
from repro.models import CIFAR_DEPTHS, IMAGENET_DEPTHS, PLAIN_CIFAR_DEPTHS, build_model
from repro.models.complexity import count_macs, count_params

MACS_TOLERANCE = 0.03  # Table 1 prints FLOPs to two significant figures

PARAMS_MODELS = (
    [f"resnet{d}" for d in CIFAR_DEPTHS]
    + [f"plain{d}" for d in PLAIN_CIFAR_DEPTHS]
    + [f"resnet{d}" for d in IMAGENET_DEPTHS]
    + ["plain18", "plain34", "resnet18_cifar"]
)
IMAGENET_MODELS = {f"resnet{d}" for d in IMAGENET_DEPTHS} | {"plain18", "plain34"}


@dataclass
class Complexity:
    model: str
    params: int
    paper_params: float | None  # in millions, as printed in the paper
    macs: int
    paper_macs: float | None
    params_match: bool | None
    macs_match: bool | None


def params_agree(params: int, paper_millions: float) -> bool:
    """True if ``params`` rounds to the paper's figure at the precision it was printed with."""
    decimals = len(repr(float(paper_millions)).split(".")[1])
    return abs(params / 1e6 - paper_millions) <= 0.5 * 10**-decimals + 1e-12


def paper_figures() -> dict[str, dict]:
    """Paper figures by model name; a plain CIFAR net has exactly its ResNet's parameters."""
    figures = dict(load_baseline("he2016_table6")["models"])
    figures |= {f"plain{d}": figures[f"resnet{d}"] for d in PLAIN_CIFAR_DEPTHS}
    figures |= load_baseline("he2016_table1")["models"]
    return figures


def complexity(name: str, figures: dict[str, dict]) -> Complexity:
    model = build_model(name)
    params = count_params(model)
    macs = count_macs(model, 224 if name in IMAGENET_MODELS else 32)
    paper = figures.get(name, {})
    paper_params, paper_macs = paper.get("params_m"), paper.get("macs")
    return Complexity(
        model=name,
        params=params,
        paper_params=paper_params,
        macs=macs,
        paper_macs=paper_macs,
        params_match=None if paper_params is None else params_agree(params, paper_params),
        macs_match=None if paper_macs is None else abs(macs / paper_macs - 1) <= MACS_TOLERANCE,
    )


def _verdict(match: bool | None) -> str:
    return "-" if match is None else ("yes" if match else "NO")


def format_table(rows: list[Complexity]) -> str:
    header = ("model", "params", "paper", "match", "MACs/image", "paper", "match")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.model,
                f"{r.params:,}",
                "-" if r.paper_params is None else f"{r.paper_params}M",
                _verdict(r.params_match),
                f"{r.macs / 1e6:,.1f}M",
                "-" if r.paper_macs is None else f"{r.paper_macs / 1e9:.1f}G",
                _verdict(r.macs_match),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in lines
    ]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="models to show (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


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
            "\nparams: exact count vs Table 6 / Table 1 (plain nets: their option-A ResNet's);"
            " MACs: forward multiply-adds per image (32x32 CIFAR, 224x224 ImageNet)"
        )
    mismatched = [r.model for r in rows if r.params_match is False or r.macs_match is False]
    if mismatched:
        print(f"repro params: disagrees with the paper: {', '.join(mismatched)}")
        return 1
    return 0
