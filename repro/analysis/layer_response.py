"""Standard deviations of layer responses, He et al. 2016 Sec. 4.2 and Fig. 7.

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)": forward hooks on the BN modules a model lists in ``response_layers()``, in eval
mode, streamed over a set of images. Moments are merged per batch in float64 (Chan et al.'s
parallel update of mean and sum of squared deviations) on the model's device and read once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import torch
from torch import nn

from repro.data import CIFAR10_MEAN, CIFAR10_STD, normalize
from repro.devices import model_device


class RunningMoments:
    """Per-channel count, mean and sum of squared deviations (M2) of [N, C, ...] tensors, float64.

    Each batch's mean and M2 come from a two-pass float64 ``var_mean``; batches are merged with
    Chan et al.'s update, so a large common offset costs no precision.
    """

    def __init__(self) -> None:
        self.count = 0  # elements per channel
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        """Add a batch [N, C, *spatial]; every element of channel c is one sample of channel c."""
        x = x.detach()
        channels = x.shape[1]
        flat = x.to(torch.float64).transpose(0, 1).reshape(channels, -1)
        n_b = flat.shape[1]
        if n_b == 0:
            return
        var_b, mean_b = torch.var_mean(flat, dim=1, correction=0)
        m2_b = var_b * n_b
        if self.mean is None or self.m2 is None:  # both None until the first batch
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        if self.mean.shape[0] != channels:
            raise ValueError(f"channel count changed from {self.mean.shape[0]} to {channels}")
        n_a, n = self.count, self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta.square() * (n_a * n_b / n)
        self.count = n

    def channel_std(self) -> torch.Tensor:
        """Population std of each channel (float64, on the accumulation device)."""
        if self.m2 is None:
            raise ValueError("no data accumulated")
        return (self.m2 / self.count).sqrt()

    def std(self) -> float:
        """Population std over all elements of all channels (the paper's per-layer std)."""
        if self.m2 is None or self.mean is None:
            raise ValueError("no data accumulated")
        grand = self.mean.mean()
        m2 = self.m2.sum() + self.count * (self.mean - grand).square().sum()
        return math.sqrt(float(m2) / (self.count * self.mean.shape[0]))


@dataclass
class LayerResponse:
    """Per-layer response std of one model (Fig. 7), in network order."""

    names: list[str]  # qualified BN module names
    std: list[float]  # std over all elements (batch, channels, positions) of each response
    channel_std: list[list[float]]  # per layer, std of each channel
    num_images: int

    @property
    def mean_std(self) -> float:
        """The scalar summary: mean of the per-layer stds."""
        return mean_response_std(self.std)

    def sorted_std(self) -> list[float]:
        """Per-layer stds sorted by magnitude, descending (Fig. 7, bottom)."""
        return sorted(self.std, reverse=True)


class _HasResponseLayers(Protocol):
    def response_layers(self) -> Sequence[nn.Module]: ...


def response_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, BN module) for each 3x3 layer's response, in network order."""
    if not hasattr(model, "response_layers"):
        raise TypeError(
            f"{type(model).__name__} has no response_layers(); layer responses are defined for "
            "the plain and residual nets of Sec. 4.2"
        )
    names = {id(m): name for name, m in model.named_modules()}
    layers = cast(_HasResponseLayers, model).response_layers()  # checked just above
    return [(names.get(id(m), f"response{i}"), m) for i, m in enumerate(layers)]


def layer_response_std(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 500,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> LayerResponse:
    """Std of every 3x3 layer's response (after BN, before ReLU/addition) over ``images``.

    ``images`` are normalised float [N, 3, H, W], or uint8 normalised here with ``mean``/``std``
    (CIFAR-10's by default). Runs in eval mode on the model's device; the model's mode is
    restored and the hooks removed afterwards, also on errors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty batch of images [N, C, H, W], got {list(images.shape)}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    layers = response_modules(model)
    moments = [RunningMoments() for _ in layers]
    device = model_device(model)
    param_dtype = next((p.dtype for p in model.parameters()), torch.float32)
    mean = CIFAR10_MEAN if mean is None else mean
    std = CIFAR10_STD if std is None else std

    was_training = model.training
    handles = []
    try:
        handles = [
            m.register_forward_hook(lambda _m, _i, out, acc=acc: acc.update(out))
            for (_, m), acc in zip(layers, moments)
        ]
        model.eval()
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = images[start : start + batch_size].to(device, non_blocking=True)
                if batch.dtype == torch.uint8:
                    batch = normalize(batch, mean, std, dtype=param_dtype)
                else:
                    batch = batch.to(param_dtype)
                model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    missing = [name for (name, _), acc in zip(layers, moments) if acc.count == 0]
    if missing:
        raise RuntimeError(f"response layers never ran in the forward pass: {', '.join(missing)}")
    return LayerResponse(
        names=[name for name, _ in layers],
        std=[acc.std() for acc in moments],
        channel_std=[acc.channel_std().cpu().tolist() for acc in moments],
        num_images=int(images.shape[0]),
    )


def mean_response_std(responses: LayerResponse | Sequence[float] | torch.Tensor) -> float:
    """Mean of the per-layer response stds: one number per model for comparisons (Fig. 7)."""
    if isinstance(responses, LayerResponse):
        responses = responses.std
    values = [float(v) for v in responses]
    if not values:
        raise ValueError("no layer stds to average")
    return math.fsum(values) / len(values)
