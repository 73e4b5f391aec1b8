"""CIFAR-10 data layer: loading and verification, splits, batched augmentation, device loader."""

from repro.data.augment import (
    CropFlipStore,
    augment,
    crop_flip,
    input_normalization,
    normalize,
    pixel_mean,
    random_crop_flip,
    sample_crop_params,
)
from repro.data.cifar10 import (
    CIFAR10,
    CLASSES,
    OFFICIAL_MD5,
    find_batches_dir,
    load_cifar10,
    resolve_data_root,
)
from repro.data.loader import DeviceLoader
from repro.data.normalization import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATIONS,
)
from repro.data.splits import SPLITS, Splits, get_split, load_splits, train_val_indices

__all__ = [
    "CIFAR10",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSES",
    "CropFlipStore",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATIONS",
    "OFFICIAL_MD5",
    "SPLITS",
    "Splits",
    "DeviceLoader",
    "augment",
    "crop_flip",
    "find_batches_dir",
    "get_split",
    "input_normalization",
    "load_cifar10",
    "load_splits",
    "normalize",
    "pixel_mean",
    "random_crop_flip",
    "resolve_data_root",
    "sample_crop_params",
    "train_val_indices",
]
