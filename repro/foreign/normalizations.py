"""How `repro verify` normalises a foreign net's inputs: named presets, ``--mean/--std``, a sidecar.

A net is only measurable with the normalisation it was trained with, and the weights do not say
which that was; so it is never guessed. It comes from (first that says):

* ``--normalize NAME``: one of :data:`PRESETS` (per-channel constants, ``x / 255`` first) or
  ``per-pixel-mean`` (the paper's, Sec. 3.4/4.2: the training images' mean image subtracted);
* ``--mean R,G,B --std R,G,B``: any per-channel constants, on the 0-1 scale or the 0-255 scale
  (values above 1 are read as 0-255 and divided by 255, for mean and std each; the report says
  which);
* ``CHECKPOINT.json`` beside the file: ``{"normalize": NAME}`` or ``{"mean": [R, G, B],
  "std": [R, G, B]}`` (the same scales);
* a resnet-repro checkpoint records its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from repro.errors import ReproError
from repro.evaluate import checkpoint_normalization
from repro.train.checkpoint import exception_reason

Triple = tuple[float, ...]
# name -> (mean, std, what it is), each on the 0-1 scale
PRESETS: dict[str, tuple[Triple, Triple, str]] = {
    "per-channel": (CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10's training-set channel mean and std"),
    "cifar-common": (
        CIFAR10_MEAN,
        (0.2023, 0.1994, 0.2010),
        "CIFAR-10's channel mean with the std (0.2023, 0.1994, 0.2010) of many public CIFAR "
        "repositories (kuangliu/pytorch-cifar and its descendants)",
    ),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD, "torchvision's ImageNet mean and std (akamaster)"),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "mean 0.5, std 0.5: inputs in [-1, 1]"),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "no normalisation: inputs in [0, 1]"),
}
PIXEL_MEAN = "per-pixel-mean"
NORMALIZATIONS = (PIXEL_MEAN, *PRESETS)
CUSTOM = "custom"


@dataclass
class Normalization:
    """How inputs are normalised: a name, per-channel mean/std, or a mean image."""

    name: str
    source: str
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)
    mean_image: torch.Tensor | None = field(default=None, repr=False)


def recorded_normalization(state: Mapping[str, object], path: Path) -> Normalization:
    """The normalisation a resnet-repro checkpoint records (its config, its mean image)."""
    norm = checkpoint_normalization(state, f"checkpoint {path}")
    if isinstance(norm.mean, torch.Tensor):
        return Normalization(norm.name, norm.source, mean_image=norm.mean.float())
    return Normalization(norm.name, norm.source, tuple(norm.mean), tuple(norm.std))


def _numbers(values: Any) -> bool:
    return (
        isinstance(values, (list, tuple))
        and len(values) == 3
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    )


def _scale(values: Any) -> float:
    """255 for constants on the 0-255 scale (any value above 1), else 1 (the 0-1 scale)."""
    return 255.0 if max(values) > 1.0 else 1.0


def custom(mean: Any, std: Any, where: str) -> Normalization:
    """Per-channel constants given by a user, on the 0-1 or the 0-255 scale (said in ``source``).
    Each of mean and std has its own scale: a CIFAR std is about 0.2 on the 0-1 scale and about
    50 on the 0-255 one, a mean about 0.5 or 120, so a mean copied as ``125.3, 123.0, 113.9``
    beside a std of ``0.2023, 0.1994, 0.2010`` is read as both code bases meant it."""
    if not (_numbers(mean) and _numbers(std)):
        raise ReproError(f"{where}: mean and std must be 3 finite numbers each (R, G, B)")
    if any(s <= 0 for s in std) or any(m < 0 for m in mean):
        raise ReproError(f"{where}: every std must be > 0 and every mean >= 0, got {mean} / {std}")
    if max(*mean, *std) > 255:
        raise ReproError(f"{where}: values above 255 are on no pixel scale, got {mean} / {std}")
    mean_scale, std_scale = _scale(mean), _scale(std)
    scales = {255.0: "0-255 scale, divided by 255", 1.0: "0-1 scale"}
    said = (
        scales[mean_scale]
        if mean_scale == std_scale
        else f"mean on the {scales[mean_scale]}, std on the {scales[std_scale]}"
    )
    m = tuple(float(v) / mean_scale for v in mean)
    s = tuple(float(v) / std_scale for v in std)
    return Normalization(CUSTOM, f"{where} ({said})", m, s)


def parse_triple(text: str, flag: str) -> list[float]:
    """``R,G,B`` -> three floats; ReproError naming the flag."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise ReproError(f"{flag} {text!r}: give three numbers R,G,B (e.g. 0.4914,0.4822,0.4465)")
    return values


def preset(name: str, source: str) -> Normalization:
    """A named normalisation; its constants filled in for the per-channel presets."""
    if name == PIXEL_MEAN:
        return Normalization(name, source)
    if name not in PRESETS:
        raise ReproError(
            f"normalisation {name!r} ({source}): use one of {', '.join(NORMALIZATIONS)}"
        )
    mean, std, _ = PRESETS[name]
    return Normalization(name, source, mean, std)


def sidecar_normalization(path: Path) -> Normalization | None:
    """The normalisation ``CHECKPOINT.json`` beside the file says; None if there is no such file."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return None
    try:
        config = json.loads(sidecar.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ReproError(f"sidecar {sidecar} cannot be read: {exception_reason(exc)}") from None
    config = config if isinstance(config, dict) else {}
    name, where = config.get("normalize"), f"sidecar {sidecar.name}"
    if isinstance(name, str) and name in NORMALIZATIONS:
        return preset(name, where)
    if "mean" in config and "std" in config:
        return custom(config["mean"], config["std"], where)
    raise ReproError(
        f'sidecar {sidecar} says no normalisation: it needs "normalize" (one of '
        f'{", ".join(NORMALIZATIONS)}) or "mean" and "std" (3 numbers each, 0-1 or 0-255 scale)'
    )


def chosen_normalization(
    name: str | None, path: Path, mean: str | None = None, std: str | None = None
) -> Normalization:
    """``--normalize``, else ``--mean/--std``, else the sidecar's; ReproError if none says."""
    if (mean is None) != (std is None):
        raise ReproError("--mean and --std go together: give both (R,G,B each)")
    if name and mean is not None:
        raise ReproError("give --normalize or --mean/--std, not both")
    if name:
        return preset(name, "--normalize")
    if mean is not None and std is not None:
        return custom(parse_triple(mean, "--mean"), parse_triple(std, "--std"), "--mean/--std")
    chosen = sidecar_normalization(path)
    if chosen is None:
        raise ReproError(
            f"--normalize is required: the weights do not say how inputs were normalised; pass "
            f"one of {', '.join(NORMALIZATIONS)}, or --mean R,G,B --std R,G,B (or write "
            f"{path.name}.json beside the file)"
        )
    return chosen


def with_mean_image(norm: Normalization, train_images: torch.Tensor | None) -> Normalization:
    """``per-pixel-mean`` given its mean image, from the training images (other names as given)."""
    if norm.name == PIXEL_MEAN and norm.mean_image is None:
        if train_images is None or train_images.numel() == 0:
            raise ReproError("--normalize per-pixel-mean needs the training images' mean image")
        norm.mean_image = train_images.to(torch.float64).mean(dim=0).div(255).float()
    return norm


def describe(norm: Normalization) -> str:
    """e.g. ``cifar-common mean (0.4914, ...) std (...)``."""
    if norm.mean_image is not None:
        return norm.name
    fmt = lambda v: "(" + ", ".join(f"{x:.4g}" for x in v) + ")"  # noqa: E731
    return f"{norm.name} mean {fmt(norm.mean)} std {fmt(norm.std)}"
