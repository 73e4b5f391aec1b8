"""Train the reproduction matrix (experiment x preset x seeds), resumably, then summarise it.

Experiments: core (plain/resnet 20/56), fig6 (Fig. 6 nets), table6 (Table 6 ResNets). Presets:
paper, common (full data + CUDA), mini (the 5,085-image subset, CPU), smoke (a few steps).
Ctrl-C or SIGTERM stops the whole matrix resumably (exit 130/143); ``--gpus`` places the runs on
a node's GPUs; ``--launcher slurm`` submits them as one Slurm job array (submitit);
``--status RUN_DIR`` shows where each run stands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from repro.cli.options import add_data_root, add_device
from repro.errors import ReproError
from repro.experiments import EXPERIMENTS, PRESETS, get_experiment, get_preset
from repro.reproduce.runner import local_launch, plan_matrix, run_local
from repro.store import check_writable

if TYPE_CHECKING:
    from repro.reproduce.slurm import SlurmOptions

# flag -> argparse dest of the options that only one launcher uses
SLURM_ONLY = {
    "--partition": "partition",
    "--gpus-per-run": "gpus_per_run",
    "--cpus-per-run": "cpus_per_run",
    "--time": "time",
    "--account": "account",
    "--qos": "qos",
    "--mem": "mem",
    "--constraint": "constraint",
    "--slurm-array-parallelism": "array_parallelism",
    "--slurm-dry-run": "slurm_dry_run",
}
LOCAL_ONLY = {"--parallel": "parallel", "--gpus": "gpus", "--per-gpu": "per_gpu"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", choices=list(EXPERIMENTS), help="required to train")
    parser.add_argument("--preset", choices=list(PRESETS), help="required to train")
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
    add_device(parser, default=None, note="; passed to each `repro train`")
    parser.add_argument(
        "--amp",
        choices=("auto", "off", "bf16", "fp16"),
        default=None,
        help="passed to each `repro train` (default: the recipe's auto, fp32 for the paper's "
        "recipe); a precision asked for here is recorded in each run as a declared deviation",
    )
    parser.add_argument(
        "--status",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="show each run of the matrix in RUN_DIR (done, running, queued, failed, "
        "interrupted, cancelled, not started), with its log and job id; trains nothing",
    )
    parser.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local (default): subprocesses here; slurm: one Slurm job array through submitit "
        "(pip install 'resnet-repro[slurm]'), one job per model and seed",
    )
    add_local_arguments(parser.add_argument_group("--launcher local"))
    add_slurm_arguments(parser.add_argument_group("--launcher slurm (each job runs one training)"))


def add_local_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="trainings at once (default 1): on one GPU, K processes share it so "
        "that small nets fill it; on the CPU each gets cores/K threads (on 2 "
        "cores one at a time was 1.27x faster, reports/performance.md)",
    )
    group.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,..|all",
        help="place the trainings one per GPU (CUDA_VISIBLE_DEVICES of each child; recorded "
        "as 'placement' in its config.json), as many at once as GPUs x --per-gpu",
    )
    group.add_argument(
        "--per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="with --gpus: K trainings share each GPU (default 1)",
    )


def add_slurm_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--time",
        default=None,
        metavar="MIN|H:MM:SS",
        help="required: each job's wall-time limit; a run that needs longer is requeued at the "
        "limit and resumes from last.pt",
    )
    group.add_argument("--partition", default=None)
    group.add_argument(
        "--gpus-per-run",
        type=int,
        default=None,
        metavar="0|1",
        help="default 1, or 0 where sinfo shows the partition has no GPU; 0: CPU runs",
    )
    group.add_argument(
        "--cpus-per-run", type=int, default=None, metavar="N", help="CPU cores per job"
    )
    group.add_argument("--mem", default=None, metavar="SIZE", help="memory per job, e.g. 16G")
    group.add_argument("--account", default=None)
    group.add_argument("--qos", default=None)
    group.add_argument("--constraint", default=None, metavar="FEATURES")
    group.add_argument(
        "--slurm-array-parallelism",
        dest="array_parallelism",
        type=int,
        default=None,
        metavar="K",
        help="at most K jobs of the array run at once",
    )
    group.add_argument(
        "--slurm-dry-run",
        action="store_true",
        help="print the sbatch script and each job's command; submit nothing",
    )


def check_launcher_options(args: argparse.Namespace) -> None:
    """An option of the other launcher is one ReproError, never silently ignored."""
    if args.launcher == "local":
        given = [f for f, dest in SLURM_ONLY.items() if getattr(args, dest) not in (None, False)]
        if given:
            raise ReproError(f"{given[0]} applies to --launcher slurm only; add --launcher slurm")
    else:
        given = [f for f, dest in LOCAL_ONLY.items() if getattr(args, dest) is not None]
        if given:
            raise ReproError(
                f"{given[0]} applies to --launcher local only: Slurm runs each training as its "
                "own job (ask for its GPU with --gpus-per-run)"
            )


def status(args: argparse.Namespace) -> int:
    from repro.reproduce.slurm import matrix_status

    if args.experiment or args.preset:
        raise ReproError(
            "--status RUN_DIR reads the matrix from RUN_DIR; drop --experiment and --preset"
        )
    matrix_status(args.status)
    return 0


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    """The Slurm launcher's options from the command line."""
    from repro.reproduce.slurm import SlurmOptions, default_gpus_per_run

    gpus = args.gpus_per_run
    if gpus is None:  # one per run, unless the partition has none
        gpus, note = default_gpus_per_run(args.partition)
        if note:
            print(note)
    return SlurmOptions(
        time=args.time,
        partition=args.partition,
        gpus_per_run=gpus,
        cpus_per_run=args.cpus_per_run,
        mem=args.mem,
        account=args.account,
        qos=args.qos,
        constraint=args.constraint,
        array_parallelism=args.array_parallelism,
        dry_run=args.slurm_dry_run,
    )


def run(args: argparse.Namespace) -> int:
    from repro.data import resolve_data_root

    if args.status is not None:
        return status(args)
    if not args.experiment or not args.preset:
        raise ReproError(
            "--experiment and --preset are required to train (or --status RUN_DIR to look at a "
            "matrix)"
        )
    check_launcher_options(args)
    preset = get_preset(args.preset)
    models = get_experiment(args.experiment)
    out = args.out or Path("runs") / f"{args.experiment}-{args.preset}"
    data_root = resolve_data_root(args.data_root).resolve()
    matrix = (args.experiment, models, preset, out, args.seeds, data_root)
    if args.launcher == "slurm":
        from repro.reproduce.slurm import plan_for_slurm, submit_plan

        options = slurm_options(args)
        plan = plan_for_slurm(*matrix, options, args.device, args.force, args.amp)
        submit_plan(plan, options)
        return 0
    if args.gpus is not None and args.parallel is not None:
        raise ReproError("--gpus sets how many run at once; drop --parallel (use --per-gpu K)")
    check_writable(out, create=False)  # a read-only --out is one line, not a traceback
    launch = local_launch(args.parallel or 1, args.gpus, args.per_gpu, args.device)
    threads = launch.threads(args.device)
    plan = plan_matrix(*matrix, device=args.device, force=args.force, amp=args.amp, threads=threads)
    return run_local(plan, launch)
