"""The CIFAR-10 networks of He et al. 2016, Sec. 4.2: plain and residual nets of depth 6n+2.

The first layer is a 3x3 convolution with 16 filters; then three stages of n BasicBlocks (2n layers
each) on 32x32, 16x16 and 8x8 feature maps with 16, 32 and 64 filters, the first block of stages 2
and 3 subsampling by a stride of 2; the network ends with global average pooling and a 10-way
fully-connected layer. Shortcut options (Sec. 3.3 and Table 3):

* ``"A"`` identity; where dimensions grow, stride-2 subsampling and zero-padded extra channels
  (no extra parameters; the paper's CIFAR choice);
* ``"B"`` 1x1 projection (+BN) only where dimensions grow, identity elsewhere;
* ``"C"`` 1x1 projection (+BN) on every block.

A plain net (``residual=False``) has exactly the same layers and no addition at all.
"""

from __future__ import annotations

import contextlib
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

STAGE_WIDTHS = (16, 32, 64)
SHORTCUT_OPTIONS = ("A", "B", "C")


def valid_depths(limit: int = 128) -> list[int]:
    """The CIFAR depths 6n+2 (n >= 1) up to ``limit``."""
    return list(range(8, limit + 1, 6))


def blocks_per_stage(depth: int) -> int:
    """n for a depth-(6n+2) network; a ValueError that lists valid depths otherwise."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        shown = ", ".join(str(d) for d in valid_depths(56))
        raise ValueError(
            f"depth {depth!r} is not a valid CIFAR ResNet depth: it must be 6n+2 with n >= 1 "
            f"({shown}, ..., 110, ..., 1202)"
        )
    return (depth - 2) // 6


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class IdentityPadShortcut(nn.Module):
    """Option A: identity; where dimensions grow, subsample by ``stride`` and zero-pad channels.

    The extra channels are split evenly before and after the existing ones, the layout of the
    most used public implementation, so that its published weights load unchanged.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_before = (out_planes - in_planes) // 2
        self.pad_after = out_planes - in_planes - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x


class ProjectionShortcut(nn.Sequential):
    """Options B and C: a 1x1 convolution W_s (Eq. 2) followed by BN."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )


def make_shortcut(option: str, in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """The shortcut of one block for option A, B or C (Sec. 3.3)."""
    grows = stride != 1 or in_planes != out_planes
    if option == "C" or (option == "B" and grows):
        return ProjectionShortcut(in_planes, out_planes, stride)
    if option in ("A", "B"):
        return IdentityPadShortcut(in_planes, out_planes, stride) if grows else nn.Identity()
    raise ValueError(f"unknown shortcut option {option!r}: choose one of {SHORTCUT_OPTIONS}")


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers, F(x) = BN(W2 ReLU(BN(W1 x))); output ReLU(F(x) + shortcut(x)).

    With ``shortcut=None`` the block is the plain counterpart: ReLU(F(x)), no addition.
    BN comes after every convolution and before the addition (Sec. 3.4).
    """

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function F(x) (the whole block output for a plain net, before ReLU)."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def check_input(x: torch.Tensor, channels: int = 3) -> None:
    """A clear error for inputs that are not [N, 3, H, W] images."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"expected a batch of images shaped [N, {channels}, H, W], got {list(x.shape)}"
        )


def he_init(model: nn.Module) -> None:
    """He et al. 2015 initialisation (the paper's [13]): N(0, 2/n), n = k*k*c_in for convolutions."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class FrozenBNStatistics:
    """A context after which the BN buffers under ``module`` are as before it: a checkpoint's
    recomputation then leaves the running statistics updated once per step, as without it."""

    def __init__(self, module: nn.Module) -> None:
        self.bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        self.saved: list[list[torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [[b.clone() for b in bn.buffers()] for bn in self.bns]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for bn, saved in zip(self.bns, self.saved):
                for b, s in zip(bn.buffers(), saved):
                    b.copy_(s)
        self.saved = []


def checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` keeping only its input for backward, where its activations are recomputed.

    Under torch.compile the recomputation is part of the compiled backward graph, which does
    not repeat buffer updates (and dynamo accepts no custom ``context_fn``).
    """
    if torch.compiler.is_compiling():
        return checkpoint(block, x, use_reentrant=False)
    contexts = (contextlib.nullcontext(), FrozenBNStatistics(block))
    return checkpoint(block, x, use_reentrant=False, context_fn=lambda: contexts)


class CifarResNet(nn.Module):
    """A depth-(6n+2) CIFAR network (Sec. 4.2): residual (``residual=True``) or plain.

    ``activation_checkpointing=True`` recomputes each block's activations in the backward pass
    (training mode with gradients only): the same gradients for about a third more compute and
    far less activation memory (ResNet-1202 at batch 128 on a 10-16 GB GPU).
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        shortcut: str = "A",
        residual: bool = True,
        zero_init_residual: bool = False,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        if shortcut not in SHORTCUT_OPTIONS:
            raise ValueError(
                f"unknown shortcut option {shortcut!r}: choose one of {SHORTCUT_OPTIONS}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.depth, self.residual, self.shortcut_option = depth, residual, shortcut
        self.activation_checkpointing = activation_checkpointing
        self.in_planes = STAGE_WIDTHS[0]
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.layer1 = self._make_layer(STAGE_WIDTHS[0], n, stride=1)
        self.layer2 = self._make_layer(STAGE_WIDTHS[1], n, stride=2)
        self.layer3 = self._make_layer(STAGE_WIDTHS[2], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_WIDTHS[2], num_classes)
        he_init(self)
        if zero_init_residual:
            for block in self.blocks():
                nn.init.zeros_(block.bn2.weight)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            shortcut = (
                make_shortcut(self.shortcut_option, self.in_planes, planes, s)
                if self.residual
                else None
            )
            layers.append(BasicBlock(self.in_planes, planes, s, shortcut))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def blocks(self) -> list[BasicBlock]:
        """The 3n blocks in network order."""
        layers = (self.layer1, self.layer2, self.layer3)
        return [cast(BasicBlock, b) for layer in layers for b in layer]  # _make_layer builds them

    def response_layers(self) -> list[nn.BatchNorm2d]:
        """The BN after each 3x3 conv, in order: the responses of Fig. 7 (depth - 1 of them)."""
        return [self.bn1] + [bn for b in self.blocks() for bn in (b.bn1, b.bn2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        x = F.relu(self.bn1(self.conv1(x)))
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            for block in self.blocks():
                x = checkpointed(block, x)
        else:
            x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int, **kwargs) -> CifarResNet:
    """A residual CIFAR net of any depth 6n+2 (option A shortcuts unless ``shortcut=`` says)."""
    return CifarResNet(depth, residual=True, **kwargs)


def cifar_plain(depth: int, **kwargs) -> CifarResNet:
    """A plain CIFAR net of any depth 6n+2: the same layers, no shortcuts."""
    return CifarResNet(depth, residual=False, **kwargs)
