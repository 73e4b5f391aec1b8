"""Train a model with a named recipe (He et al. 2016, Sec. 4.2) into a run folder; resumable.

Examples::

    repro train --model resnet20 --recipe paper --out runs/resnet20-s0 --seed 0
    repro train --out runs/resnet20-s0 --resume          # continue exactly where it stopped
    repro train --model resnet20 --out /tmp/smoke --max-steps 20 --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from repro.cli.options import add_data_root, add_device, add_speed_options, add_threads
from repro.errors import ReproError
from repro.recipes import RECIPE_FLAGS, RECIPES
from repro.train.checkpoint import model_kwargs_problem
from repro.train.config import TrainConfig, config_fields, config_from_run


def add_recipe_overrides(parser: argparse.ArgumentParser) -> None:
    """``--<field>`` for every recipe field (from the Recipe dataclass's field metadata)."""
    group = parser.add_argument_group("recipe overrides (default: the recipe's)")
    for name, options in RECIPE_FLAGS.items():
        kw = {k: v for k, v in options.items() if k != "type" and v}
        if options["type"] is None:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = options["type"]
        group.add_argument(f"--{name.replace('_', '-')}", default=None, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bool_flag = argparse.BooleanOptionalAction
    g = parser.add_argument_group("run")
    g.add_argument("--model", help="model name (see `repro params`), e.g. resnet20, plain56")
    g.add_argument(
        "--depth", type=int, help="depth for the generic builders resnet_cifar/plain_cifar"
    )
    g.add_argument("--shortcut", choices=["A", "B", "C"], help="CIFAR shortcut option (Sec. 3.3)")
    g.add_argument(
        "--model-kwargs",
        metavar="JSON",
        help="extra model arguments, e.g. '{\"zero_init_residual\": true}'",
    )
    g.add_argument("--recipe", choices=sorted(RECIPES), help="training recipe (default: paper)")
    g.add_argument("--out", required=True, help="run folder (config.json, metrics.jsonl, *.pt)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its recorded settings (re-running the "
        "same command into the same --out resumes too)",
    )
    add_data_root(g)
    g.add_argument(
        "--seed", type=int, help="seed of initialisation, shuffling, augmentation (default 0)"
    )
    g.add_argument("--split-seed", type=int, help="seed of the validation split (default 0)")
    add_recipe_overrides(parser)

    s = parser.add_argument_group("runtime")
    add_device(s, default=None)
    add_speed_options(s, default=None)
    s.add_argument(
        "--deterministic",
        action=bool_flag,
        default=None,
        help="deterministic algorithms (exact resume; slower on CUDA)",
    )
    add_threads(s)
    s.add_argument(
        "--eval-every", type=int, help="iterations between evaluations (default: 1 epoch)"
    )
    s.add_argument(
        "--checkpoint-every", type=int, help="iterations between last.pt (default: --eval-every)"
    )
    s.add_argument("--max-steps", type=int, help="smoke run: stop after N iterations")
    s.add_argument("--eval-batch-size", type=int)
    s.add_argument(
        "--log-every",
        type=int,
        help="iterations between progress updates, each a host sync (default: 50 on "
        "the CPU; on CUDA at evaluations only)",
    )
    s.add_argument("--sync-bn", action=bool_flag, default=None, help="SyncBatchNorm under torchrun")
    s.add_argument("--tensorboard", action=bool_flag, default=None)
    s.add_argument("--quiet", action="store_true", default=None, help="no progress output")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe (on --resume: the run's recorded one, flags on top)."""
    model_kwargs: dict[str, object] = {}
    if args.model_kwargs:
        try:
            model_kwargs = json.loads(args.model_kwargs)
        except ValueError as exc:
            raise ReproError(f"--model-kwargs is not valid JSON ({exc})") from None
        if not isinstance(model_kwargs, dict):
            raise ReproError("--model-kwargs must be a JSON object, e.g. '{\"depth\": 8}'")
    if args.depth is not None:
        model_kwargs["depth"] = args.depth
    if args.shortcut is not None:
        model_kwargs["shortcut"] = args.shortcut
    problem = model_kwargs_problem(model_kwargs, "--model-kwargs/--depth:")
    if problem:  # before a model of 10**13 classes is allocated
        raise ReproError(problem)

    overrides = {f: getattr(args, f) for f in RECIPE_FLAGS if getattr(args, f) is not None}
    if overrides.get("step_size") == 0:
        overrides["step_size"] = None
        overrides.setdefault("milestones", ())
    if overrides.get("early_stopping_patience") == 0:
        overrides["early_stopping_patience"] = None
    runtime = {k: getattr(args, k) for k in config_fields("cli") if getattr(args, k) is not None}

    if args.resume:
        config = config_from_run(args.out)
        if args.model is not None and args.model != config.model:
            raise ReproError(
                f"--resume: {args.out} trains {config.model}, not {args.model}; "
                "drop --model or use a new --out folder"
            )
        if model_kwargs:
            config.model_kwargs = {**config.model_kwargs, **model_kwargs}
        if args.recipe is not None:
            config.recipe = args.recipe
        config.overrides = {**config.overrides, **overrides}
        if "amp" in runtime:  # asked for now: recorded as asked
            config.amp_requested = runtime["amp"]
        return dataclasses.replace(config, **runtime)
    if args.model is None:
        raise ReproError("--model is required (or --resume to continue the run in --out)")
    return TrainConfig(
        model=args.model,
        out=args.out,
        recipe=args.recipe or "paper",
        model_kwargs=model_kwargs,
        overrides=overrides,
        **runtime,
    )


def run(args: argparse.Namespace) -> int:
    from repro.train.signals import TrainingInterrupted
    from repro.train.trainer import train

    config = config_from_args(args)
    try:
        train(config)
    except TrainingInterrupted as exc:
        print(f"repro train: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0
