"""Per-channel normalisation constants, kept free of torch so that any layer can read them.

``CIFAR10_*`` are the training set's channel mean and std (the common per-channel choice);
``IMAGENET_*`` are torchvision's ImageNet constants, which some published CIFAR nets were trained
with (akamaster's, for one), so their checkpoints must be evaluated with them.
"""

from __future__ import annotations

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
