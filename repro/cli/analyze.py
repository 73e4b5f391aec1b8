"""Analyses of trained models; ``layer-response``: the layer response stds of Fig. 7 (Sec. 4.2).

``repro analyze layer-response RUNS...`` takes a reproduction folder (``<model>/seed<k>/final.pt``),
a single run folder (``final.pt``) or checkpoint files, and writes ``layer_response.json`` and
``layer_response.png`` (Fig. 7: stds in layer order and sorted by magnitude).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.analysis.fig7 import (
    find_checkpoints,
    measure,
    prepare_jobs,
    recorded_data_root,
    summarise,
    write_figure_and_json,
)
from repro.cli.options import add_data_root, add_device
from repro.data import SPLITS, get_split, load_cifar10, resolve_data_root
from repro.devices import resolve_device
from repro.errors import ReproError
from repro.store import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    p = sub.add_parser(
        "layer-response",
        help="std of each 3x3 layer's response (Fig. 7)",
        description="Std of each 3x3 layer's response after BN (He et al. 2016, Fig. 7).",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a reproduction folder (<model>/seed<k>/final.pt), a run folder, or checkpoint files",
    )
    p.add_argument("--out", type=Path, help="output folder (default: the one folder given)")
    add_data_root(p, "the runs' data_root, else ")
    p.add_argument("--split", default="test", choices=SPLITS, help="images to use (default test)")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    add_device(p)
    p.add_argument("--log-y", action="store_true", help="logarithmic std axis in the figure")
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )


def default_out(paths: list[Path]) -> Path:
    if len(paths) != 1:
        raise ReproError(
            f"{len(paths)} inputs given: say where to write the results with --out DIR"
        )
    return paths[0] if paths[0].is_dir() else paths[0].parent


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ReproError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = [Path(p) for p in args.paths]
    out = args.out if args.out is not None else default_out(paths)
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} is a file, not a folder")
    check_writable(out, create=False)  # before the (slow) forward passes, not after them
    device = resolve_device(args.device)
    jobs = prepare_jobs([c for p in paths for c in find_checkpoints(p)])
    data = load_cifar10(resolve_data_root(args.data_root or recorded_data_root(jobs)))
    images, _ = get_split(data, args.split)
    print(f"{args.split}: {images.shape[0]} images from {data.root}")
    entries = measure(jobs, images, device, args.batch_size)
    meta = {
        "split": args.split,
        "num_images": int(images.shape[0]),
        "data_root": str(data.root),
        "data_official": data.official,
        "device": str(device),
    }
    doc = summarise(entries, meta)
    subset = "" if data.official else " (subset)"
    title = f"Std of layer responses, CIFAR-10 {args.split}{subset} (He et al. 2016, Fig. 7)"
    write_figure_and_json(doc, out, title, args.log_y)
    for name, m in doc["models"].items():
        print(f"{name}: mean response std {m['mean_std']:.4f} ({m['num_seeds']} seed(s))")
    return 0
