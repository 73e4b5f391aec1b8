"""Show how the verdicts are calibrated: each claim's operating characteristics, the tolerance
model and the published reference runs behind it (He et al. 2016 and its reruns).

`repro calibration --preset common --experiment fig6` prints, as Markdown, what `repro report`
includes for a run of that preset: for every claim whether it is asserted, the probability that a
faithful run passes and that a run 1 pp worse fails, at 1 and 5 seeds.
"""

from __future__ import annotations

import argparse

from repro.experiments import EXPERIMENTS, PRESETS
from repro.report.calibration import trust_sections


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=tuple(PRESETS), default="common", help="default common")
    parser.add_argument(
        "--experiment", choices=tuple(EXPERIMENTS), default="core", help="default core"
    )


def run(args: argparse.Namespace) -> int:
    print(f"# Calibration of preset `{args.preset}`, experiment `{args.experiment}`\n")
    print("\n".join(trust_sections(args.preset, args.experiment)))
    return 0
