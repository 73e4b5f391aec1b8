"""The classic CIFAR input pipeline the fast path is measured against: a torchvision-style Dataset
(uint8 HWC array -> PIL image -> RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
Normalize, per image) behind a multi-worker DataLoader."""

from __future__ import annotations

import numpy as np
import torch

from repro.data import CIFAR10_MEAN, CIFAR10_STD


class ClassicDataset(torch.utils.data.Dataset):
    """HWC uint8 arrays -> PIL image -> transform, one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def classic_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    workers: int,
    pin_memory: bool,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A shuffling, augmenting DataLoader over uint8 [N, 3, H, W] ``images`` (persistent workers,
    so that worker start-up is charged to the first, untimed, round only)."""
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    dataset = ClassicDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        drop_last=drop_last,
    )
