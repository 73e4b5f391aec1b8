"""The runtime switches of the fast path (``--channels-last``, ``--compile``): auto | on | off."""

from __future__ import annotations

from repro.errors import ReproError

SWITCHES = ("auto", "on", "off")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def resolve_switch(flag: str, value: str, auto: bool) -> bool:
    """``auto`` | ``on`` | ``off`` -> on or off (``auto``: the device's default)."""
    choice = str(value).lower()
    if choice not in SWITCHES:
        raise ReproError(f"unknown --{flag} {value!r}; use auto, on or off")
    return auto if choice == "auto" else choice == "on"


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ReproError(f"unknown --compile-mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    return mode


def switch_word(resolved: bool) -> str:
    """The request that gives a switch as config.json recorded it resolved: ``on`` or ``off``."""
    return "on" if resolved else "off"


def resolve_compile(value: str, mode: str, device_type: str) -> str | None:
    """The torch.compile mode for ``--compile VALUE --compile-mode MODE`` on a device type (None:
    eager); auto compiles on CUDA only, since compiling costs tens of seconds on a small CPU."""
    return (
        check_compile_mode(mode)
        if resolve_switch("compile", value, device_type == "cuda")
        else None
    )
