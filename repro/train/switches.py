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


def resolve_compile(value: bool | str, mode: str, device_type: str) -> str | None:
    """The torch.compile mode for ``--compile VALUE --compile-mode MODE`` on a device type (None:
    eager); auto compiles on CUDA only, since compiling costs tens of seconds on a small CPU."""
    return (
        check_compile_mode(mode)
        if resolve_switch("compile", value, device_type == "cuda")
        else None
    )
