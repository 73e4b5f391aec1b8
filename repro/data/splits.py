"""Named splits: ``train`` (all), the paper's ``train45k``/``val5k`` hold-out, and ``test``.

He et al. (2016, sec. 4.2) hold out 5k of the 50k training images for validation. The paper does
not say how; here the split is **stratified** (each class contributes its share, 500 per class on
the full set) and fixed by a seed, so every run with the same seed sees the same images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.data.cifar10 import CIFAR10, load_cifar10
from repro.errors import ReproError

SPLITS: tuple[str, ...] = ("train", "train45k", "val5k", "test")
PAPER_VAL_FRACTION = 0.1
DEFAULT_SPLIT_SEED = 0


def train_val_indices(
    labels: torch.Tensor, val_fraction: float, seed: int = DEFAULT_SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded (train, val) index tensors; ``round(val_fraction * N)`` go to val.

    Each class gets ``val_fraction`` of its images (largest remainder rounding so the total is
    exact). Indices within each returned tensor are sorted, so the split is a pure function of
    (labels, val_fraction, seed).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ReproError(f"validation fraction must be in [0, 1), got {val_fraction}")
    labels = labels.detach().to("cpu", torch.int64).reshape(-1)
    n = labels.numel()
    n_val = round(val_fraction * n)
    classes = torch.unique(labels)
    counts = torch.stack([(labels == c).sum() for c in classes]).to(torch.float64)
    quota = counts * val_fraction
    take = quota.floor().to(torch.int64)
    short = n_val - int(take.sum())
    if short > 0:  # largest remainder; ties go to the lower class index
        order = torch.argsort(-(quota - take), stable=True)
        take[order[:short]] += 1
    gen = torch.Generator().manual_seed(int(seed))
    val_parts = []
    for c, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == c).flatten()
        val_parts.append(members[torch.randperm(members.numel(), generator=gen)[:k]])
    val = torch.cat(val_parts) if val_parts else torch.empty(0, dtype=torch.int64)
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), torch.sort(val).values


def get_split(
    data: CIFAR10, name: str, seed: int = DEFAULT_SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, int64 labels) of a named split: train, train45k, val5k or test."""
    if name == "train":
        return data.train_images, data.train_labels
    if name == "test":
        return data.test_images, data.test_labels
    if name in ("train45k", "val5k"):
        train_idx, val_idx = train_val_indices(data.train_labels, PAPER_VAL_FRACTION, seed)
        idx = train_idx if name == "train45k" else val_idx
        return data.train_images[idx], data.train_labels[idx]
    raise ReproError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")


@dataclass
class Splits:
    """The (uint8 images, labels) a training run uses: its training split, the held-out
    validation split (None without one) and the test set."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    official: bool
    root: Path

    def counts(self) -> dict[str, int]:
        """Images per split, as config.json records them."""
        val = 0 if self.val is None else int(self.val[1].numel())
        return {"train": int(self.train[1].numel()), "val": val, "test": int(self.test[1].numel())}


def load_splits(root: str | os.PathLike | None, val_fraction: float, split_seed: int) -> Splits:
    """The training split left after holding out ``val_fraction`` (stratified, seeded), that
    validation split (None if ``val_fraction`` is 0), and the test set."""
    data = load_cifar10(root)
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    train = (data.train_images, data.train_labels)
    if val_fraction > 0:
        tr, va = train_val_indices(data.train_labels, val_fraction, split_seed)
        train = (data.train_images[tr], data.train_labels[tr])
        val = (data.train_images[va], data.train_labels[va])
    return Splits(train, val, (data.test_images, data.test_labels), data.official, data.root)
