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
from typing import Any

from repro.errors import ReproError
from repro.train.recipes import RECIPES
from repro.train.switches import COMPILE_MODES, SWITCHES

# CLI flag dest -> recipe field
RECIPE_FLAGS: dict[str, str] = {
    "epochs": "epochs",
    "iterations": "iterations",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "nesterov": "nesterov",
    "batch_size": "batch_size",
    "milestones": "milestones",
    "milestone_unit": "milestone_unit",
    "step_size": "step_size",
    "gamma": "gamma",
    "warmup": "warmup",
    "warmup_lr": "warmup_lr",
    "warmup_until_error": "warmup_until_error",
    "warmup_min_depth": "warmup_min_depth",
    "warmup_check_every": "warmup_check_every",
    "val_fraction": "val_fraction",
    "early_stopping_patience": "early_stopping_patience",
}
RUNTIME_FLAGS: tuple[str, ...] = (
    "seed", "split_seed", "data_root", "device", "amp", "channels_last", "compile", "compile_mode",
    "deterministic", "threads", "eval_every", "checkpoint_every", "max_steps", "eval_batch_size",
    "log_every", "sync_bn", "tensorboard", "quiet",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bool_flag = argparse.BooleanOptionalAction
    g = parser.add_argument_group("run")
    g.add_argument("--model", help="model name (see `repro params`), e.g. resnet20, plain56")
    g.add_argument(
        "--depth", type=int, help="depth for the generic builders resnet_cifar/plain_cifar"
    )
    g.add_argument("--shortcut", choices=["A", "B", "C"], help="CIFAR shortcut option (Sec. 3.3)")
    g.add_argument("--model-kwargs", metavar="JSON", help='extra model arguments, e.g. \'{"zero_init_residual": true}\'')  # fmt: skip
    g.add_argument("--recipe", choices=sorted(RECIPES), help="training recipe (default: paper)")
    g.add_argument("--out", required=True, help="run folder (config.json, metrics.jsonl, *.pt)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its recorded settings (re-running the "
                   "same command into the same --out resumes too)")  # fmt: skip
    g.add_argument("--data-root", help="CIFAR-10 folder (default: $REPRO_DATA, else data/cifar10)")
    g.add_argument("--seed", type=int, help="seed of initialisation, shuffling, augmentation (default 0)")  # fmt: skip
    g.add_argument("--split-seed", type=int, help="seed of the validation split (default 0)")

    r = parser.add_argument_group("recipe overrides")
    r.add_argument("--epochs", type=int)
    r.add_argument("--iterations", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--momentum", type=float)
    r.add_argument("--weight-decay", type=float)
    r.add_argument("--nesterov", action=bool_flag, default=None)
    r.add_argument("--batch-size", type=int, help="global batch size")
    r.add_argument("--milestones", type=int, nargs="+", help="lr drops (in --milestone-unit)")
    r.add_argument("--milestone-unit", choices=["epoch", "iteration"])
    r.add_argument("--step-size", type=int, help="StepLR: a drop every N milestone units (0: off)")
    r.add_argument("--gamma", type=float)
    r.add_argument("--warmup", choices=["auto", "on", "off"],
                   help="0.01 warm-up: auto = depth >= 110 (Sec. 4.2)")  # fmt: skip
    r.add_argument("--warmup-lr", type=float)
    r.add_argument("--warmup-until-error", type=float, help="percent (default 80)")
    r.add_argument("--warmup-min-depth", type=int)
    r.add_argument("--warmup-check-every", type=int, help="iterations between warm-up checks")
    r.add_argument("--val-fraction", type=float, help="held-out share of the training set")
    r.add_argument("--early-stopping-patience", type=int, help="evaluations; 0 = off")

    s = parser.add_argument_group("runtime")
    s.add_argument("--device", help="auto (default), cpu or cuda")
    s.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="auto: bf16 on CUDA, off on CPU")  # fmt: skip
    s.add_argument("--channels-last", nargs="?", const="on", choices=SWITCHES, metavar="auto|on|off",
                   help="NHWC memory layout; auto (default) = on")  # fmt: skip
    s.add_argument("--compile", nargs="?", const="on", choices=SWITCHES, metavar="auto|on|off",
                   help="torch.compile the model, eager if compiling fails; auto (default) = on "
                   "CUDA only")  # fmt: skip
    s.add_argument("--compile-mode", choices=COMPILE_MODES,
                   help="torch.compile mode (default: default; reduce-overhead and max-autotune "
                   "add CUDA graphs)")  # fmt: skip
    s.add_argument("--deterministic", action=bool_flag, default=None,
                   help="deterministic algorithms (exact resume; slower on CUDA)")  # fmt: skip
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--eval-every", type=int, help="iterations between evaluations (default: 1 epoch)")  # fmt: skip
    s.add_argument("--checkpoint-every", type=int, help="iterations between last.pt (default: --eval-every)")  # fmt: skip
    s.add_argument("--max-steps", type=int, help="smoke run: stop after N iterations")
    s.add_argument("--eval-batch-size", type=int)
    s.add_argument("--log-every", type=int,
                   help="iterations between progress updates, each a host sync (default: 50 on "
                   "the CPU; on CUDA at evaluations only)")  # fmt: skip
    s.add_argument("--sync-bn", action=bool_flag, default=None, help="SyncBatchNorm under torchrun")
    s.add_argument("--tensorboard", action=bool_flag, default=None)
    s.add_argument("--quiet", action="store_true", default=None, help="no progress output")


def config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig the flags describe (on --resume: the run's recorded one, flags on top)."""
    from repro.train.trainer import TrainConfig, config_from_run

    model_kwargs: dict[str, Any] = {}
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

    overrides = {
        f: getattr(args, d) for d, f in RECIPE_FLAGS.items() if getattr(args, d) is not None
    }
    if overrides.get("step_size") == 0:
        overrides["step_size"] = None
        overrides.setdefault("milestones", ())
    if overrides.get("early_stopping_patience") == 0:
        overrides["early_stopping_patience"] = None
    runtime = {k: getattr(args, k) for k in RUNTIME_FLAGS if getattr(args, k) is not None}

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
    from repro.train.trainer import TrainingInterrupted, train

    config = config_from_args(args)
    try:
        train(config)
    except TrainingInterrupted as exc:
        print(f"repro train: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0
