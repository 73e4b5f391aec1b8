"""Shared fixtures: the real CIFAR-10 mini subset (skipped when absent) and tiny synthetic sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from data_helpers import write_cifar10

pytest_plugins = ["pytester"]  # runs the acceptance suite in-process (test_acceptance_checks.py)

MINI_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar-10-mini"
# where the subset travels with the checkout (the GPU check's `--data-root .carry/cifar-10-mini`)
MINI_ROOT = Path(os.environ.get("REPRO_MINI_ROOT") or MINI_ROOT)


@pytest.fixture(scope="session")
def mini_root() -> Path:
    """The real 5,085/1,017-image subset at ../shared/data/cifar-10-mini (CI has it there)."""
    if not (MINI_ROOT / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(f"the CIFAR-10 mini subset is not at {MINI_ROOT}")
    return MINI_ROOT


@pytest.fixture
def synthetic_cifar(tmp_path: Path) -> Path:
    """A 100/20-image random set in the official layout (fast tests of the whole pipeline)."""
    return write_cifar10(tmp_path / "cifar-synthetic")
