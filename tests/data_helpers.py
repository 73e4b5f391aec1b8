"""Helpers for the data tests: writers for synthetic copies in the official
``cifar-10-batches-py`` pickle layout that also return the arrays written (for round trips)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_batch(path: Path, data: object, labels: object) -> None:
    """One batch file as the official pickles hold it (plus protocol 4, like the mini set)."""
    with path.open("wb") as f:
        pickle.dump({"batch_label": path.name, "data": data, "labels": labels}, f, protocol=4)


def write_synthetic(
    root: Path, per_batch: int = 12, n_test: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a random copy under ``root/cifar-10-batches-py``; return its arrays ([N,3,32,32])."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in TRAIN_FILES:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        write_batch(folder / name, x, y)
        xs.append(x)
        ys.append(y)
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = rng.integers(0, 10, n_test).tolist()
    write_batch(folder / "test_batch", tx, ty)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(
            {"label_names": CLASS_NAMES, "num_vis": 3072, "num_cases_per_batch": per_batch}, f
        )
    return {
        "train_images": np.concatenate(xs).reshape(-1, 3, 32, 32),
        "train_labels": np.concatenate(ys).astype(np.int64),
        "test_images": tx.reshape(-1, 3, 32, 32),
        "test_labels": np.asarray(ty, dtype=np.int64),
    }


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """A random CIFAR-10 look-alike in the official layout under ``root``; returns ``root``."""
    write_synthetic(root, per_batch, test, seed)
    return root
