"""The runtime switches of the fast path (``--channels-last``, ``--compile``): auto | on | off."""

from __future__ import annotations

from repro.errors import ReproError

SWITCHES = ("auto", "on", "off")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def resolve_switch(flag: str, value: bool | str, auto: bool) -> bool:
    """``auto`` | ``on`` | ``off`` (or the bool an earlier config.json recorded) -> on or off."""
    if isinstance(value, bool):
        return value
    choice = str(value).lower()
    if choice not in SWITCHES:
        raise ReproError(f"unknown --{flag} {value!r}; use auto, on or off")
    return auto if choice == "auto" else choice == "on"


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ReproError(f"unknown --compile-mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    return mode
