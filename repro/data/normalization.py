"""Per-channel normalisation constants and the names of the normalisations, kept free of torch so
that any layer can read them.

``CIFAR10_*`` are the training set's channel mean and std (the common per-channel choice);
``IMAGENET_*`` are torchvision's ImageNet constants, which some published CIFAR nets were trained
with (akamaster's, for one), so their checkpoints must be evaluated with them. ``per-pixel-mean``
is the paper's (He et al. 2016, Sec. 3.4/4.2: "the per-pixel mean subtracted"): the mean image
of the training images, no std division; its mean image is data, made by
:func:`repro.data.augment.pixel_mean`.
"""

from __future__ import annotations

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# `--normalize` words: the paper's, the common per-channel one, akamaster's ImageNet constants.
NORMALIZATIONS: tuple[str, ...] = ("per-pixel-mean", "per-channel", "imagenet")
UNIT_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-pixel-mean divides by nothing


def channel_constants(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) per channel of a per-channel normalisation; None for per-pixel-mean (whose
    mean is an image); ValueError for an unknown name."""
    if name == "per-channel":
        return CIFAR10_MEAN, CIFAR10_STD
    if name == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if name == "per-pixel-mean":
        return None
    raise ValueError(f"unknown normalisation {name!r}; use one of {', '.join(NORMALIZATIONS)}")
