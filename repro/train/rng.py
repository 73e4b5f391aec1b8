"""Capture and restore every global random number generator (python, numpy, torch CPU, CUDA)."""

from __future__ import annotations

import random
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class NumpyState(TypedDict):
    """numpy's legacy MT19937 state, in types ``torch.load`` reads with ``weights_only=True``."""

    algorithm: str
    keys: torch.Tensor  # int64, the uint32 key array
    pos: int
    has_gauss: int
    cached_gaussian: float


# np.random.get_state() itself: what checkpoints written before NumpyState hold
LegacyNumpyState = tuple[str, np.ndarray, int, int, float]
NumpySetState = tuple[str, npt.NDArray[np.uint32], int, int, float]  # np.random.set_state's


class RngState(TypedDict):
    """Every global generator's state, as checkpoints hold it (``rng``)."""

    python: tuple[object, ...]
    numpy: NumpyState | LegacyNumpyState
    torch: torch.Tensor
    cuda: list[torch.Tensor] | None


def rng_state() -> RngState:
    """The state of every global generator, for a checkpoint, in types ``torch.load`` reads with
    ``weights_only=True``: python's is a tuple of ints already; numpy's key array becomes an int64
    tensor beside its position and Gaussian cache."""
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {
            "algorithm": str(algorithm),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def numpy_state(saved: NumpyState | LegacyNumpyState) -> NumpySetState:
    """``np.random.set_state``'s tuple from :func:`rng_state`'s dict, or from the tuple that
    checkpoints written before it held (``np.random.get_state()`` itself), unchanged."""
    if not isinstance(saved, dict):
        algorithm, old_keys, pos, has_gauss, cached_gaussian = saved
        return algorithm, np.asarray(old_keys, dtype=np.uint32), pos, has_gauss, cached_gaussian
    keys = np.asarray(saved["keys"].cpu().numpy(), dtype=np.uint32)
    return (
        saved["algorithm"],
        keys,
        saved["pos"],
        saved["has_gauss"],
        saved["cached_gaussian"],
    )


def set_rng_state(state: RngState) -> None:
    """Restore :func:`rng_state`, in its layout or the older one (the CUDA part only when CUDA is
    present)."""
    random.setstate(state["python"])
    np.random.set_state(numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda[: torch.cuda.device_count()]])
