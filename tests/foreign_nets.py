"""CIFAR ResNets written as other code bases write them, for `repro verify`'s tests.

``TheirNet`` registers projections before the 3x3 convolutions, names everything differently,
and implements option A's shortcut in any layout seen in the wild with its own code
(``torch.cat`` with zeros, ``nn.AvgPool2d``, ``nn.MaxPool2d``, odd-phase slicing), optionally
with a bias on every convolution. ``taught_cifar`` writes a data set whose test labels are such a
net's own predictions, so the net in its true reading scores 0 % and any other reading does not.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from data_helpers import CLASS_NAMES, TRAIN_FILES, write_batch
from torch import nn


class TheirShortcut(nn.Module):
    """Option A: subsample, then new zero channels split / after / before the old ones."""

    def __init__(self, extra: int, stride: int, padding: str, subsample: str) -> None:
        super().__init__()
        self.extra, self.stride, self.padding = extra, stride, padding
        pools = {"avg-pool": nn.AvgPool2d(2), "max-pool": nn.MaxPool2d(2)}
        self.pool = pools.get(subsample) if stride != 1 else None
        self.odd = subsample == "strided-odd"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        elif self.stride != 1:
            x = x[:, :, 1::2, 1::2] if self.odd else x[:, :, ::2, ::2]
        n, _, h, w = x.shape
        if self.padding == "split":
            return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        zeros = x.new_zeros(n, self.extra, h, w)
        return torch.cat([x, zeros] if self.padding == "after" else [zeros, x], 1)


class TheirBlock(nn.Module):
    """Projection registered before the 3x3 convs, as a Sequential; other names throughout."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        option: str,
        residual: bool,
        layout: tuple[str, str] = ("split", "strided"),
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.grows = stride != 1 or cin != cout
        self.residual = residual
        project = residual and (option == "C" or (option == "B" and self.grows))
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), nn.BatchNorm2d(cout))
            if project
            else None
        )
        self.pad = TheirShortcut(cout - cin, stride, *layout) if self.grows else None
        self.conv_a = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.conv_b = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.norm_a = nn.BatchNorm2d(cout)  # both BNs after both convs: paired by width and order
        self.norm_b = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(x)))))
        if not self.residual:
            return F.relu(out)
        if self.downsample is not None:
            short = self.downsample(x)
        elif self.pad is not None:
            short = self.pad(x)
        else:
            short = x
        return F.relu(out + short)


class TheirNet(nn.Module):
    def __init__(
        self,
        depth: int,
        option: str = "A",
        residual: bool = True,
        classes: int = 10,
        layout: tuple[str, str] = ("split", "strided"),
        bias: bool = False,
    ):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=bias), nn.BatchNorm2d(16))
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(TheirBlock(cin, cout, s, option, residual, layout, bias))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(64, classes)
        for m in self.modules():  # non-trivial statistics, so that a wrong mapping shows
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.uniform_(m.bias, -0.5, 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(F.relu(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] -> (x / 255 - mean) / std; ``mean`` per channel or a mean image."""
    x = torch.from_numpy(images).float() / 255
    m = torch.as_tensor(mean, dtype=torch.float32)
    m = m.view(3, 1, 1) if m.dim() == 1 else m
    return (x - m) / torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)


@torch.no_grad()
def taught_cifar(root: Path, net: TheirNet, mean, std, n_test: int = 200, seed: int = 0) -> Path:
    """A CIFAR-10 copy (random images) whose test labels are ``net``'s predictions under this
    normalisation (``mean="pixel"``: the training images' mean image, std 1). The head is centred
    and sharpened on these images first, so that the labels spread over the classes."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, (5, 12, 3072), dtype=np.uint8)
    for name, x in zip(TRAIN_FILES, train):
        write_batch(folder / name, x, rng.integers(0, 10, len(x)).tolist())
    test = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    if isinstance(mean, str):
        mean = train.reshape(-1, 3, 32, 32).astype(np.float64).mean(0) / 255
        std = (1.0, 1.0, 1.0)
    net.eval()
    feats = net.features(normalised(test, mean, std))
    net.classifier.weight.copy_(torch.randn(net.classifier.out_features, feats.shape[1]) * 3)
    net.classifier.weight.div_(feats.std(0).clamp_min(1e-6))
    net.classifier.bias.copy_(-(net.classifier.weight @ feats.mean(0)))
    labels = net(normalised(test, mean, std)).argmax(1)
    write_batch(folder / "test_batch", test.reshape(n_test, -1), labels.tolist())
    meta = {"label_names": CLASS_NAMES, "num_vis": 3072, "num_cases_per_batch": 12}
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(meta, f)
    return root
