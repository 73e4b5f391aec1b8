"""The options several commands share, each defined once: same flag, same default, same help."""

from __future__ import annotations

import argparse

from repro.data.cifar10 import DATA_ENV, DEFAULT_DATA_ROOT
from repro.devices import AMP_CHOICES
from repro.train.switches import COMPILE_MODES, SWITCHES


def add_data_root(
    parser: argparse._ActionsContainer, default_note: str = "", *aliases: str
) -> None:
    """``--data-root DIR``: the CIFAR-10 folder (``$REPRO_DATA``, else ``data/cifar10``)."""
    default = f"{default_note}${DATA_ENV}, else {DEFAULT_DATA_ROOT}"
    parser.add_argument(
        "--data-root",
        *aliases,
        dest="data_root",
        default=None,
        metavar="DIR",
        help=f"CIFAR-10 folder (default: {default})",
    )


def add_device(
    parser: argparse._ActionsContainer, default: str | None = "auto", note: str = ""
) -> None:
    """``--device auto|cpu|cuda[:N]`` (auto: CUDA when present)."""
    parser.add_argument(
        "--device",
        default=default,
        metavar="DEVICE",
        help=f"auto (CUDA when present, the default), cpu, cuda or cuda:N{note}",
    )


def add_json(
    parser: argparse._ActionsContainer, help_text: str = "print the result as JSON"
) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def add_threads(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def add_switch(
    parser: argparse._ActionsContainer, flag: str, default: str | None, help_text: str
) -> None:
    """``--FLAG [auto|on|off]`` (the bare flag means on)."""
    parser.add_argument(
        f"--{flag}",
        nargs="?",
        const="on",
        default=default,
        choices=SWITCHES,
        metavar="auto|on|off",
        help=help_text,
    )


def add_speed_options(parser: argparse._ActionsContainer, default: str | None) -> None:
    """``--amp``, ``--channels-last``, ``--compile``, ``--compile-mode``: the fast path's knobs
    (``default`` None leaves an unset flag None, so a resumed run keeps its recorded value)."""
    parser.add_argument(
        "--amp",
        default=default,
        choices=AMP_CHOICES,
        help="autocast: auto (default) = bf16 on CUDA (fp32 for the paper recipes, whose "
        "precision it is; --amp bf16 there is a declared deviation), off on the CPU",
    )
    add_switch(parser, "channels-last", default, "NHWC memory layout; auto (default) = on")
    add_switch(
        parser,
        "compile",
        default,
        "torch.compile the model, eager if compiling fails; auto (default) = on CUDA only",
    )
    parser.add_argument(
        "--compile-mode",
        default=default and "default",
        choices=COMPILE_MODES,
        help="torch.compile mode (default: default; reduce-overhead and "
        "max-autotune add CUDA graphs)",
    )
