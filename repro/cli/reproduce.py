"""Train the reproduction matrix (experiment x preset x seeds), resumably, then summarise it.

Experiments: core (plain/resnet 20/56), fig6 (Fig. 6 nets), table6 (Table 6 ResNets). Presets:
paper, common (full data + CUDA), mini (the 5,085-image subset, CPU), smoke (a few steps).
Ctrl-C or SIGTERM stops the whole matrix resumably (exit 130/143); ``--gpus`` places the runs on
a node's GPUs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.options import add_data_root, add_device
from repro.errors import ReproError
from repro.reproduce.presets import EXPERIMENTS, PRESETS, get_experiment, get_preset
from repro.reproduce.runner import reproduce


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, choices=list(EXPERIMENTS))
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run directory (default runs/<experiment>-<preset>; re-run to resume)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="runs per model, seeds 0..K-1")
    add_data_root(parser)
    parser.add_argument(
        "--force", action="store_true", help="run paper/common even without CUDA or on a subset"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="trainings at once (default 1): on one GPU, K processes share it so "
        "that small nets fill it; on the CPU each gets cores/K threads (on 2 "
        "cores one at a time was 1.27x faster, reports/performance.md)",
    )
    parser.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,..|all",
        help="place the trainings one per GPU (CUDA_VISIBLE_DEVICES of each child; recorded "
        "as 'placement' in its config.json), as many at once as GPUs x --per-gpu",
    )
    parser.add_argument(
        "--per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="with --gpus: K trainings share each GPU (default 1)",
    )
    add_device(parser, default=None, note="; passed to each `repro train`")


def run(args: argparse.Namespace) -> int:
    from repro.data import resolve_data_root

    preset = get_preset(args.preset)
    models = get_experiment(args.experiment)
    out = args.out or Path("runs") / f"{args.experiment}-{args.preset}"
    data_root = resolve_data_root(args.data_root).resolve()
    if args.gpus is not None and args.parallel is not None:
        raise ReproError("--gpus sets how many run at once; drop --parallel (use --per-gpu K)")
    return reproduce(
        args.experiment,
        models,
        preset,
        out,
        args.seeds,
        data_root,
        device=args.device,
        parallel=args.parallel or 1,
        force=args.force,
        gpus=args.gpus,
        per_gpu=args.per_gpu,
    )
