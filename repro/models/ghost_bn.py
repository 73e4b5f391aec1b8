"""BatchNorm over chunks of the batch, as the paper's two GPUs computed it (He et al. 2016, Sec.
4.2: "a mini-batch size of 128 on two GPUs": each GPU normalises its own 64 images).

:class:`GhostBatchNorm2d` is an ``nn.BatchNorm2d`` with the same parameters and buffers (so the
same state_dict keys and shapes: every checkpoint reader, ``repro verify`` and Fig. 7 see a plain
BN net) whose *training* forward splits the batch into chunks of ``bn_batch`` images and
normalises each chunk with its own statistics, as one BN replica per chunk would. Evaluation is
plain BN with the running statistics. :func:`use_bn_batch` swaps every ``nn.BatchNorm2d`` of a
built model for one.

Running statistics "as two GPUs would": under DataParallel, and DistributedDataParallel with
``broadcast_buffers=True`` (its default), the replicas' buffers are overwritten by replica /
rank 0's at every forward, so the statistics that survive are the first replica's. Here, likewise,
only the FIRST chunk updates ``running_mean``/``running_var`` (and ``num_batches_tracked`` counts
one per forward); the other chunks use their own batch statistics and update nothing.

Chunking: a batch of B images is split into chunks of ``bn_batch`` plus a remainder chunk of the
rest (as uneven GPUs would); a remainder of one image is merged into the chunk before it (a BN
over one image normalises each pixel by the image's own spatial statistics only, which no GPU
split of the paper's would do). A batch of at most ``bn_batch`` images is plain BN. The chunk
sizes depend on the batch size only: no data-dependent control flow (torch.compile specialises on
the batch size, as it does anyway). Chunks are views along dim 0, so channels_last is kept.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def chunk_sizes(batch: int, bn_batch: int) -> list[int]:
    """Sizes of the BN chunks of a batch: ``bn_batch`` each, then the remainder; a remainder of
    one image joins the last full chunk. ``[batch]`` when ``batch <= bn_batch``."""
    if batch <= bn_batch:
        return [batch]
    full, rest = divmod(batch, bn_batch)
    sizes = [bn_batch] * full
    if rest == 1:
        sizes[-1] += 1
    elif rest:
        sizes.append(rest)
    return sizes


class GhostBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics come from chunks of ``bn_batch`` images; see
    the module docstring (Sec. 4.2's two GPUs: ``bn_batch=64`` of a batch of 128)."""

    def __init__(self, num_features: int, bn_batch: int, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        if bn_batch < 2:
            raise ValueError(f"bn_batch must be >= 2 images, got {bn_batch}")
        if not self.track_running_stats:
            raise ValueError("GhostBatchNorm2d needs track_running_stats=True")
        self.bn_batch = int(bn_batch)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, bn_batch: int) -> GhostBatchNorm2d:
        """A chunked copy of ``bn``: same hyper-parameters, parameters, buffers, mode, device."""
        ref = bn.weight if bn.weight is not None else bn.running_mean
        ghost = cls(
            bn.num_features,
            bn_batch,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            device=None if ref is None else ref.device,
            dtype=None if ref is None else ref.dtype,
        )
        ghost.load_state_dict(bn.state_dict())
        return ghost.train(bn.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bn_batch={self.bn_batch}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.bn_batch:
            return super().forward(x)
        first, *rest = x.split(chunk_sizes(x.shape[0], self.bn_batch))
        out = [super().forward(first)]  # the first chunk's statistics are the running ones
        out += [
            F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in rest
        ]
        return torch.cat(out)


def use_bn_batch(model: nn.Module, bn_batch: int) -> int:
    """Swap every ``nn.BatchNorm2d`` under ``model`` for a :class:`GhostBatchNorm2d` of
    ``bn_batch`` images, in place (same parameters and buffers); the number swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, GhostBatchNorm2d.from_batchnorm(child, bn_batch))
                swapped += 1
    return swapped
