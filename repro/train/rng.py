"""Capture and restore every global random number generator (python, numpy, torch CPU, CUDA)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
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


def numpy_state(saved: dict[str, Any] | tuple) -> tuple:
    """``np.random.set_state``'s tuple from :func:`rng_state`'s dict, or from the tuple that
    checkpoints written before it held (``np.random.get_state()`` itself), unchanged."""
    if not isinstance(saved, dict):
        return tuple(saved)
    keys = np.asarray(saved["keys"].cpu().numpy(), dtype=np.uint32)
    return (
        saved["algorithm"],
        keys,
        saved["pos"],
        saved["has_gauss"],
        saved["cached_gaussian"],
    )


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`, in its layout or the older one (the CUDA part only when CUDA is
    present)."""
    random.setstate(state["python"])
    np.random.set_state(numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
