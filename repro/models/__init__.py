"""The model zoo: ``build_model(name, **kwargs)`` and ``list_models()``.

CIFAR-10 nets of Sec. 4.2 (``resnet20`` .. ``resnet1202``, ``plain20`` .. ``plain110``, and any
depth 6n+2 through ``resnet_cifar`` / ``plain_cifar`` with ``depth=``), the ImageNet nets of
Table 1 (``resnet18`` .. ``resnet152``; ``variant="v1.5"`` for the stride-in-3x3 bottleneck), the
plain baselines of Table 2 (``plain18``, ``plain34``) and ``resnet18_cifar``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

from torch import nn

from repro.models.cifar import BasicBlock, CifarResNet, cifar_plain, cifar_resnet, valid_depths
from repro.models.ghost_bn import GhostBatchNorm2d, use_bn_batch
from repro.models.imagenet import Bottleneck, ResNet, imagenet_resnet

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
PLAIN_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)


def _resnet18_cifar(num_classes: int = 10, **kwargs) -> ResNet:
    return imagenet_resnet(18, num_classes=num_classes, cifar_stem=True, **kwargs)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": partial(cifar_resnet, d) for d in CIFAR_DEPTHS},
    **{f"plain{d}": partial(cifar_plain, d) for d in PLAIN_CIFAR_DEPTHS},
    "resnet_cifar": cifar_resnet,
    "plain_cifar": cifar_plain,
    **{f"resnet{d}": partial(imagenet_resnet, d) for d in IMAGENET_DEPTHS},
    "plain18": partial(imagenet_resnet, 18, residual=False),
    "plain34": partial(imagenet_resnet, 34, residual=False),
    "resnet18_cifar": _resnet18_cifar,
}


def list_models() -> list[str]:
    """Every name ``build_model`` accepts (``*_cifar`` generic builders need ``depth=``)."""
    return list(_REGISTRY)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name; keyword arguments go to its constructor (e.g. ``num_classes``)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint} (`repro params` or list_models() lists all)"
        )
    if name in ("resnet_cifar", "plain_cifar") and "depth" not in kwargs:
        raise ValueError(f"{name} needs depth=6n+2, e.g. one of {valid_depths(56)}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "GhostBatchNorm2d",
    "ResNet",
    "build_model",
    "list_models",
    "use_bn_batch",
]
