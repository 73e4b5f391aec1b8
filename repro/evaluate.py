"""Evaluation of a classifier on uint8 images: mean cross-entropy, top-1 error, per-class accuracy.

Errors are percentages (He et al. 2016 report test error in %, Table 6). Batches are normalised on
the device, run in eval mode under ``torch.inference_mode()``, and the sums stay on the device
until one read at the end, so a training loop can call this at every evaluation point cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.data import CIFAR10_MEAN, CIFAR10_STD, normalize
from repro.data.augment import Mean
from repro.data.normalization import UNIT_STD
from repro.devices import model_device, resolve_amp
from repro.errors import ReproError
from repro.run_config import parse_run_config, run_config_problems


@dataclass(frozen=True)
class InputNorm:
    """How a checkpoint's inputs are normalised: per-channel ``mean``/``std``, or a mean image
    (``mean`` a tensor [C, H, W], ``std`` ones); ``name`` and ``source`` for the reader."""

    name: str
    mean: Mean
    std: tuple[float, ...]
    source: str


def _three_numbers(values: Any) -> bool:
    return (
        isinstance(values, (list, tuple))
        and len(values) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    )


def checkpoint_normalization(
    state: Mapping[str, object], where: str = "the checkpoint"
) -> InputNorm:
    """The normalisation a checkpoint of this project was trained with, for every reader
    (`repro evaluate`, Fig. 7): ``per-pixel-mean`` (Sec. 3.4/4.2) with the mean image the
    checkpoint holds; else its config's per-channel mean/std; else, for a checkpoint that records
    none, CIFAR-10's constants (what such runs used). ReproError for a corrupt record."""
    recorded = state.get("config")
    problems = run_config_problems(recorded, where) if isinstance(recorded, dict) else []
    if problems:
        raise ReproError(f"{problems[0]}: it is corrupt; use another checkpoint of the run")
    config = parse_run_config(recorded if isinstance(recorded, dict) else {}, where)
    name = config.normalize or "per-channel"
    if name == "per-pixel-mean":
        image = state.get("mean_image")
        if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.is_floating_point()):
            raise ReproError(
                f"{where} records per-pixel-mean normalisation but holds no mean image "
                "[C, H, W]; it is corrupt: use another checkpoint of the run"
            )
        return InputNorm(name, image, UNIT_STD, "the checkpoint's per-pixel mean image")
    mean, std = config.mean, config.std
    if mean is None or std is None:
        return InputNorm(
            name, CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10 constants (the checkpoint records none)"
        )
    if not (_three_numbers(mean) and _three_numbers(std)):
        raise ReproError(
            f"{where} is corrupt: its config's mean/std are not 3 numbers each; "
            "use another checkpoint of the run"
        )
    floats = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return InputNorm(name, floats(mean), floats(std), "checkpoint config")


@dataclass(frozen=True)
class EvalResult:
    """Mean loss, top-1 error (%), accuracy (%) per class index (None: class absent), counts."""

    loss: float
    error_percent: float
    per_class_accuracy: tuple[float | None, ...]
    per_class_count: tuple[int, ...]
    n: int

    def per_class_by_name(self, classes: Sequence[str]) -> dict[str, float | None]:
        """``{class name: accuracy %}``; the names are matched to class indices in order."""
        return dict(zip(classes, self.per_class_accuracy))


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Mean,
    std: Sequence[float],
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    channels_last: bool = False,
    amp: str | torch.dtype | None = "off",
    num_classes: int | None = None,
) -> EvalResult:
    """Evaluate ``model`` on uint8 ``images`` [N, 3, H, W] with int ``labels`` [N].

    Inputs are normalised with ``(x / 255 - mean) / std`` (``mean`` per channel, or a mean image
    [C, H, W] for the paper's per-pixel mean). ``device`` defaults to the model's;
    the model must already be there; ``amp`` is the training vocabulary (auto, bf16, fp16, off).
    The model's train/eval mode is restored afterwards.
    """
    _check_inputs(images, labels, batch_size)
    n = int(labels.numel())
    device = torch.device(device) if device is not None else model_device(model)
    cast = resolve_amp(amp, device)
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if isinstance(mean, torch.Tensor):
        mean = mean.to(device)  # once, not per batch

    loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
    correct = count = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                x = images[start : start + batch_size].to(device, non_blocking=True)
                y = labels[start : start + batch_size].to(device, torch.int64, non_blocking=True)
                x = normalize(x, mean, std).contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=cast or torch.float32, enabled=bool(cast)):
                    logits = model(x)
                logits = logits.float()
                if correct is None or count is None:
                    k = num_classes or logits.shape[1]
                    if logits.dim() != 2 or logits.shape[1] < k:
                        raise ValueError(
                            f"the model gives {list(logits.shape)} logits for {k} classes"
                        )
                    correct = torch.zeros(k, dtype=torch.int64, device=device)
                    count = torch.zeros(k, dtype=torch.int64, device=device)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").to(acc_dtype)
                hit = logits.argmax(dim=1) == y
                correct += torch.bincount(y[hit], minlength=correct.numel())[: correct.numel()]
                count += torch.bincount(y, minlength=count.numel())[: count.numel()]
    finally:
        model.train(was_training)

    assert correct is not None and count is not None  # n >= 1 (_check_inputs): the loop ran
    return _result(loss_sum, correct, count, n)


def refuse_nan_logits(result: EvalResult, what: str) -> EvalResult:
    """``result`` unless its loss is NaN: a NaN logit is no measurement, so say so in one line."""
    if math.isnan(result.loss):
        raise ReproError(
            f"{what} gives NaN logits on the test images (its weights overflow): a NaN logit is "
            "no measurement; the file is damaged or not a trained net"
        )
    return result


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 images [N, C, H, W], got {images.dtype} {list(images.shape)}"
        )
    n = int(labels.numel())
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images but {n} labels")
    if n == 0:
        raise ValueError("nothing to evaluate: the split has no images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _result(
    loss_sum: torch.Tensor, correct: torch.Tensor, count: torch.Tensor, n: int
) -> EvalResult:
    """The device sums as an EvalResult, read back in one transfer."""
    acc_dtype = loss_sum.dtype
    totals = torch.cat([loss_sum.reshape(1), correct.to(acc_dtype), count.to(acc_dtype)]).cpu()
    k = correct.numel()
    hits = [int(v) for v in totals[1 : 1 + k].tolist()]
    counts = [int(v) for v in totals[1 + k :].tolist()]
    if sum(counts) != n:
        raise ValueError(f"labels outside 0..{k - 1}: the model has {k} outputs")
    return EvalResult(
        loss=float(totals[0]) / n,
        error_percent=100.0 * (1.0 - sum(hits) / n),
        per_class_accuracy=tuple(100.0 * h / c if c else None for h, c in zip(hits, counts)),
        per_class_count=tuple(counts),
        n=n,
    )
