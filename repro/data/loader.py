"""A data loader that keeps a whole split on the target device as uint8 and yields augmented,
normalised batches; its state (epoch, position, generator, this epoch's order) can be saved and
restored between any two steps so a resumed run sees exactly the batches it would have seen.
Normalisation is per channel (mean/std) or, for the paper's per-pixel mean, a mean image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypedDict

import torch

from repro.data.augment import CropFlipStore, Mean, normalize
from repro.data.normalization import CIFAR10_MEAN, CIFAR10_STD
from repro.errors import ReproError


class LoaderState(TypedDict):
    """A :class:`DeviceLoader`'s place in its epochs, in a checkpoint (``loader``)."""

    epoch: int
    position: int  # batches of this epoch already drawn
    generator: torch.Tensor  # the permutation generator's state
    order: torch.Tensor | None  # this epoch's permutation (None before the first)
    num_samples: int
    batch_size: int


class DeviceLoader:
    """Shuffled (train) or ordered (eval) batches of a device-resident uint8 split.

    ``for x, y in loader:`` yields the *remaining* batches of the current epoch, then advances
    to the next epoch. All randomness (the per-epoch permutation, then each batch's crops and
    flips, in that order) comes from one CPU ``torch.Generator`` seeded with ``seed``, so results
    are identical on CPU and CUDA. ``x`` is float normalised [B, C, H, W], ``y`` int64 [B].

    A tensor ``mean`` is a mean image (the paper's per-pixel mean, Sec. 3.4/4.2: "the network
    inputs are 32x32 images, with the per-pixel mean subtracted"): it is subtracted from each
    32x32 network input, i.e. after the crop; padded pixels are black before the subtraction, as
    in the per-channel modes.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool = True,
        shuffle: bool | None = None,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        padding: int = 4,
        flip: bool = True,
        mean: Mean = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        dtype: torch.dtype = torch.float32,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ReproError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ReproError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if batch_size < 1:
            raise ReproError(f"batch size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device).contiguous()
        # training crops come from a padded+mirrored copy made once (see CropFlipStore)
        self._store = CropFlipStore(self.images, padding, flip) if train else None
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = drop_last
        self.padding, self.flip = padding, flip
        # a mean image (per-pixel-mean) lives on the device beside the split
        self.mean: Mean = mean.to(self.device) if isinstance(mean, torch.Tensor) else tuple(mean)
        self.std = tuple(std)
        self.dtype, self.memory_format = dtype, memory_format
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = 0
        self.position = 0  # batches of the current epoch already yielded
        self._order: torch.Tensor | None = None  # this epoch's sample order (CPU int64)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _start_epoch(self) -> None:
        if self.shuffle:
            self._order = torch.randperm(self.num_samples, generator=self.generator)
        else:
            self._order = torch.arange(self.num_samples)
        self.position = 0

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self._order = None

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device, non_blocking=True)
        if self._store is not None:
            x = self._store.random_crop(idx, self.generator)
        else:
            x = self.images.index_select(0, idx)
        x = normalize(x, self.mean, self.std, self.dtype)
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, self.labels.index_select(0, idx)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._order is None:
            self._start_epoch()
        assert self._order is not None
        order = self._order
        while self.position < len(self):
            start = self.position * self.batch_size
            idx = order[start : start + self.batch_size]
            batch = self._batch(idx)
            self.position += 1  # counted before the yield: a checkpoint now resumes after it
            yield batch
        self._end_epoch()

    def state_dict(self) -> LoaderState:
        """Everything needed to resume exactly: epoch, position, generator state, epoch order."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "generator": self.generator.get_state(),
            "order": None if self._order is None else self._order.clone(),
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: LoaderState) -> None:
        """Restore a :meth:`state_dict`; the split and batch size must match the saved ones."""
        if state["num_samples"] != self.num_samples or state["batch_size"] != self.batch_size:
            raise ReproError(
                f"loader state is for {state['num_samples']} samples in batches of "
                f"{state['batch_size']}, this loader has {self.num_samples} in batches of "
                f"{self.batch_size}"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.generator.set_state(state["generator"].cpu())
        order = state["order"]
        self._order = None if order is None else order.to("cpu", torch.int64).clone()
