"""Where and in which precision a model runs: one device resolution and one amp vocabulary for
training, evaluation, estimates and analyses (``--device auto|cpu|cuda[:N]``, ``--amp
auto|bf16|fp16|off``)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from repro.errors import ReproError

# Set by `repro reproduce --gpus`: where the matrix placed this run (config.json "placement").
PLACEMENT_ENV = "REPRO_PLACEMENT"

AMP_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp16", "off")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def resolve_device(
    name: str = "auto", local_rank: int | None = None, warn_cpu: bool = False
) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU (with a warning if ``warn_cpu``).

    ``cuda`` without CUDA, an index past the last GPU and anything but cpu/cuda are one
    ReproError each. Under torchrun (``local_rank`` given) a CUDA run uses its local GPU.
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        else:
            if warn_cpu:
                warnings.warn("no CUDA device found: training on the CPU", stacklevel=2)
            name = "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ReproError(f"--device {name!r} is not a device; use auto, cpu or cuda[:N]") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ReproError(f"--device {name!r} is not supported; use auto, cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise ReproError(
            f"--device {name} asked for, but no CUDA device is available; use --device cpu"
        )
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ReproError(f"--device {name}: only {count} CUDA device(s) here")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def resolve_amp(
    amp: str | torch.dtype | None, device: torch.device, cuda_auto: str = "bf16"
) -> torch.dtype | None:
    """The autocast dtype: ``auto`` = ``cuda_auto`` on CUDA (bf16, or off for a recipe that
    trains in fp32 such as the paper's) and off on the CPU; fp16 needs CUDA (its training uses a
    GradScaler). A dtype or None passes through."""
    if amp is None or isinstance(amp, torch.dtype):
        return amp
    choice = str(amp).lower()
    if choice == "auto":
        return _AMP_DTYPES[cuda_auto] if device.type == "cuda" else None
    if choice not in _AMP_DTYPES:
        raise ReproError(f"unknown --amp {amp!r}; use {', '.join(AMP_CHOICES)}")
    if choice == "fp16" and device.type != "cuda":
        raise ReproError("--amp fp16 needs CUDA; use --amp bf16 or off on the CPU")
    return _AMP_DTYPES[choice]


def amp_name(dtype: torch.dtype | None) -> str:
    """The ``--amp`` word for an autocast dtype (as config.json records it)."""
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
