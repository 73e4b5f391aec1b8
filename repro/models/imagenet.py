"""The ImageNet networks of He et al. 2016, Table 1 (and the plain baselines of Table 2).

A 7x7/2 stem with 64 filters and a 3x3/2 max-pool, four stages (conv2_x .. conv5_x) of BasicBlocks
(18/34 layers) or Bottlenecks (50/101/152 layers) at 64..512 base widths, global average pooling and
a 1000-way fully-connected layer. Shortcuts are identities, with 1x1 projections where dimensions
grow (option B, Sec. 3.3). The paper's original bottleneck subsamples in its first 1x1 convolution
(``variant="v1"``); the widely used ``"v1.5"`` subsamples in the 3x3 instead.
``resnet18_cifar`` keeps the 18-layer body but uses a 3x3 stem without max-pool for 32x32 inputs.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.cifar import BasicBlock, check_input, conv3x3, he_init, make_shortcut

VARIANTS = ("v1", "v1.5")


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (restore, 4x) convolutions, each followed by BN (Fig. 5 right)."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        variant: str = "v1",
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = shortcut

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """Table 1's architectures; ``residual=False`` gives the plain nets of Table 2."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        residual: bool = True,
        shortcut: str = "B",
        variant: str = "v1",
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: choose one of {VARIANTS}")
        self.block, self.residual, self.shortcut_option = block, residual, shortcut
        self.variant = variant
        self.in_planes = 64
        if cifar_stem:
            self.conv1 = conv3x3(3, 64)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        he_init(self)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        out_planes = planes * self.block.expansion
        layers: list[nn.Module] = []
        for s in [stride] + [1] * (n - 1):
            shortcut = (
                make_shortcut(self.shortcut_option, self.in_planes, out_planes, s)
                if self.residual
                else None
            )
            if self.block is Bottleneck:
                layers.append(Bottleneck(self.in_planes, planes, s, shortcut, self.variant))
            else:
                layers.append(BasicBlock(self.in_planes, planes, s, shortcut))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def blocks(self) -> list[BasicBlock | Bottleneck]:
        """All residual blocks in network order."""
        layers = (self.layer1, self.layer2, self.layer3, self.layer4)
        return [cast("BasicBlock | Bottleneck", b) for layer in layers for b in layer]

    def response_layers(self) -> list[nn.BatchNorm2d]:
        """The BN after each 3x3 conv of the body in network order (Fig. 7's responses)."""
        layers: list[nn.BatchNorm2d] = []
        for b in self.blocks():
            layers += [b.bn2] if isinstance(b, Bottleneck) else [b.bn1, b.bn2]
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


IMAGENET_LAYERS: dict[
    int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]
] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def imagenet_resnet(depth: int, **kwargs) -> ResNet:
    """ResNet-18/34/50/101/152 of Table 1."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(
            f"no ImageNet ResNet of depth {depth}: choose one of {list(IMAGENET_LAYERS)}"
        )
    block, layers = IMAGENET_LAYERS[depth]
    return ResNet(block, layers, **kwargs)
