"""The option-A shortcut layouts found in the wild, as alternative readings of one checkpoint.

Option A (He et al. 2016, Sec. 3.3 and 4.2) is "identity shortcuts, zero-padding for increasing
dimensions": it has no parameters, so the weights do not say how an implementation subsampled
and where it put the new channels. Public code differs on both:

* **padding**: the new channels split evenly before and after the old ones (akamaster's
  ``F.pad(x, (..., planes // 4, planes // 4))``), all after them (``torch.cat([x, zeros])``), or
  all before them (``torch.cat([zeros, x])``);
* **subsampling**: every other pixel from the first (``x[:, :, ::2, ::2]``, ``AvgPool2d(1, 2)``)
  or the second (``x[:, :, 1::2, 1::2]``) row and column, a 2x2 average pool or a 2x2 max pool.

Each (padding, subsampling) pair is one reading of the same weights; only a net's function on
real images tells them apart (:mod:`repro.foreign.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.cifar import IdentityPadShortcut

PADDINGS = ("split", "after", "before")
SUBSAMPLINGS = ("strided", "strided-odd", "avg-pool", "max-pool")


@dataclass(frozen=True)
class Layout:
    """Where option A's new channels go and how its shortcut subsamples."""

    padding: str = "split"
    subsample: str = "strided"

    def describe(self) -> str:
        """e.g. ``pad split, strided``."""
        return f"pad {self.padding}, {self.subsample}"


DEFAULT = Layout()  # this project's own and akamaster's
LAYOUTS = tuple(Layout(p, s) for p in PADDINGS for s in SUBSAMPLINGS)


def parse_layout(text: str) -> Layout:
    """``PADDING,SUBSAMPLE`` (e.g. ``after,avg-pool``) -> a Layout; ValueError naming the choices."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or parts[0] not in PADDINGS or parts[1] not in SUBSAMPLINGS:
        raise ValueError(
            f"--layout {text!r}: give PADDING,SUBSAMPLE with PADDING one of {', '.join(PADDINGS)} "
            f"and SUBSAMPLE one of {', '.join(SUBSAMPLINGS)}"
        )
    return Layout(parts[0], parts[1])


class LayoutPadShortcut(nn.Module):
    """Option A's shortcut in one :class:`Layout`: subsample by ``stride``, zero-pad channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, layout: Layout) -> None:
        super().__init__()
        self.stride, self.layout, self.extra = stride, layout, out_planes - in_planes

    def _subsample(self, x: torch.Tensor) -> torch.Tensor:
        s, how = self.stride, self.layout.subsample
        if s == 1:
            return x
        if how == "strided":
            return x[:, :, ::s, ::s]
        if how == "strided-odd":
            return x[:, :, s - 1 :: s, s - 1 :: s]
        if how == "avg-pool":
            return F.avg_pool2d(x, s, s, ceil_mode=True)
        return F.max_pool2d(x, s, s, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._subsample(x)
        if self.extra <= 0:
            return x
        before = {"split": self.extra // 2, "after": 0, "before": self.extra}[self.layout.padding]
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


def apply_layout(model: nn.Module, layout: Layout) -> int:
    """Replace every option-A shortcut of ``model`` in place by ``layout``'s; how many there were."""
    count = 0
    for module in model.modules():
        shortcut = getattr(module, "shortcut", None)
        if isinstance(shortcut, IdentityPadShortcut):
            in_planes = int(module.conv1.in_channels)  # type: ignore[union-attr, arg-type]
            out_planes = int(module.conv2.out_channels)  # type: ignore[union-attr, arg-type]
            module.shortcut = LayoutPadShortcut(in_planes, out_planes, shortcut.stride, layout)
            count += 1
    return count
