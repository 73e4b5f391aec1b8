"""Time a few training steps per model on this device and project the whole schedule's time.

Example: ``repro estimate --model resnet20 --model resnet56 --recipe paper --device cpu --steps 10``
"""

from __future__ import annotations

import argparse
import json

from repro.cli.options import add_device, add_json, add_speed_options, add_threads
from repro.errors import ReproError
from repro.recipes import RECIPES
from repro.train.switches import resolve_switch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", required=True, help="model to time (repeat for several)"
    )
    parser.add_argument("--recipe", default="paper", choices=sorted(RECIPES))
    add_device(parser)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument(
        "--warmup-steps", type=int, default=3, help="untimed steps first (default 3)"
    )
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    add_speed_options(parser, default="auto")
    parser.add_argument("--depth", type=int, help="depth for resnet_cifar / plain_cifar")
    parser.add_argument(
        "--activation-checkpointing",
        choices=["off", "on", "both"],
        default="off",
        help="CIFAR nets: recompute each block in backward; 'both' times each model with and "
        "without it (peak memory side by side)",
    )
    add_threads(parser)
    add_json(parser, "print a JSON list")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def run(args: argparse.Namespace) -> int:
    import torch

    from repro.train.estimate import estimate

    if args.steps < 1 or args.warmup_steps < 0:
        raise ReproError("--steps must be >= 1 and --warmup-steps >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise ReproError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    kwargs = {"depth": args.depth} if args.depth is not None else {}
    # with checkpointing first: on the CPU a process's peak RSS only grows, so the smaller
    # peak must be measured before the larger one
    ckpt = {"off": [False], "on": [True], "both": [True, False]}[args.activation_checkpointing]
    results = [
        estimate(
            name,
            args.recipe,
            args.device,
            args.steps,
            args.warmup_steps,
            args.batch_size,
            args.amp,
            resolve_switch("channels-last", args.channels_last, auto=True),
            {**kwargs, "activation_checkpointing": True} if on else kwargs,
            compile=args.compile,
            compile_mode=args.compile_mode,
        )
        for name in args.model
        for on in ckpt
    ]
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for r in results:
        mem = "n/a" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:.0f} MiB"
        print(
            f"{r.model:>12} {r.recipe} on {r.device} (batch {r.batch_size}, amp {r.amp}, "
            f"channels_last {r.channels_last}, compile {r.compile or 'off'}, "
            f"checkpointing {r.activation_checkpointing}, "
            f"{r.threads} threads): "
            f"{r.step_seconds * 1000:.1f} ms/step, {r.images_per_s:.0f} img/s; "
            f"{r.total_iterations} iterations + {r.evaluations} evaluations -> "
            f"~{_hours(r.projected_seconds)}; peak memory {mem} [{r.peak_memory_kind}]"
        )
    return 0
