"""Checkpoints: written atomically, read back with one clear error for anything that is not ours.

A checkpoint is a dict with at least ``format`` (:data:`FORMAT`), ``model_name``, ``model_kwargs``
and ``model`` (the state dict); training checkpoints add optimiser, scheduler, loader and RNG states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.errors import ReproError
from repro.fileio import atomic_write
from repro.models import build_model

FORMAT = "resnet-repro/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint this project wrote; ReproError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, pickle garbage, wrong file type
        raise ReproError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); "
            "it is truncated or not a PyTorch checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ReproError(
            f"checkpoint {path} was not written by resnet-repro (no format {FORMAT!r}); "
            "for akamaster's published weights use `repro evaluate --from akamaster`"
        )
    for key in ("model_name", "model_kwargs", "model"):
        if key not in state:
            raise ReproError(f"checkpoint {path} is incomplete: it has no {key!r}")
    return state


def model_from_checkpoint(
    checkpoint: dict | str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint holds and load its weights; returns (model, checkpoint)."""
    state = (
        checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)
    )
    model = build_model(state["model_name"], **state["model_kwargs"])
    weights = {
        k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state["model"].items()
    }
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ReproError(
            f"checkpoint weights do not fit {state['model_name']}: {str(exc).splitlines()[0]}"
        ) from None
    return model, state
