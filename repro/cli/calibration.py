"""Show how the verdicts are calibrated: each claim's operating characteristics, the tolerance
model and the published reference runs behind it (He et al. 2016 and its reruns).

`repro calibration --preset common --experiment fig6` prints, as Markdown, what `repro report`
includes for a run of that preset: for every claim whether it is asserted, the probability that a
faithful run passes and that a run 1 pp worse fails, and the shift failed with 80 % power, at 1
and 5 seeds (`--seeds K`: at K seeds, the K a run of K seeds is judged at).
"""

from __future__ import annotations

import argparse

from repro.calibration import SEEDS_SHOWN
from repro.errors import ReproError
from repro.experiments import EXPERIMENTS, PRESETS
from repro.report.calibration import trust_sections


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=tuple(PRESETS), default="common", help="default common")
    parser.add_argument(
        "--experiment", choices=tuple(EXPERIMENTS), default="core", help="default core"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="K",
        help=f"the numbers of seeds to show (a run is judged at its own K; default "
        f"{' '.join(map(str, SEEDS_SHOWN))})",
    )


def run(args: argparse.Namespace) -> int:
    seeds = tuple(args.seeds or SEEDS_SHOWN)
    if not all(1 <= k <= 1000 for k in seeds):
        raise ReproError(f"--seeds {' '.join(map(str, seeds))}: each K must be 1 to 1000")
    print(f"# Calibration of preset `{args.preset}`, experiment `{args.experiment}`\n")
    print("\n".join(trust_sections(args.preset, args.experiment, seeds)))
    return 0
