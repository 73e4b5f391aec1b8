"""Shared fixtures: the real CIFAR-10 mini subset (skipped when absent) and tiny synthetic sets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

MINI_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar-10-mini"
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]  # fmt: skip


@pytest.fixture(scope="session")
def mini_root() -> Path:
    """The real 5,085/1,017-image subset at ../shared/data/cifar-10-mini (CI has it there)."""
    if not (MINI_ROOT / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(f"the CIFAR-10 mini subset is not at {MINI_ROOT}")
    return MINI_ROOT


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """Write a random CIFAR-10 look-alike in the official pickle layout under ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        batch = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in np.arange(n) % 10],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)
    meta = {"label_names": LABEL_NAMES, "num_vis": 3072, "num_cases_per_batch": per_batch}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=4)
    return root


@pytest.fixture
def synthetic_cifar(tmp_path: Path) -> Path:
    """A 100/20-image random set in the official layout (fast tests of the whole pipeline)."""
    return write_cifar10(tmp_path / "cifar-synthetic")
