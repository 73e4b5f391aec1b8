"""Convert the published CIFAR-10 ResNets of akamaster/pytorch_resnet_cifar10 (foreign checkpoints).

Their files hold ``{"state_dict": ..., "best_prec1": ...}`` with ``module.``-prefixed keys and the
classifier named ``linear``; their option-A shortcut (Sec. 3.3) pads ``planes // 4`` zero channels on
each side after ``x[:, :, ::2, ::2]``, as ours does, so the weights load unchanged. Those models were
trained on inputs normalised with the ImageNet mean and std, which the import records.

This reader is the one case mapped by key names (`repro evaluate --from akamaster`); every other
foreign checkpoint is mapped by structure (:mod:`repro.foreign.structure`, `repro verify`), which
reads akamaster's files too.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from repro.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from repro.errors import ReproError
from repro.models import CIFAR_DEPTHS, build_model
from repro.models.cifar import CifarResNet
from repro.train.checkpoint import FORMAT, read_torch_file

MEAN: tuple[float, float, float] = IMAGENET_MEAN
STD: tuple[float, float, float] = IMAGENET_STD
MODELS: tuple[str, ...] = tuple(f"resnet{d}" for d in CIFAR_DEPTHS)
_BLOCK_KEY = re.compile(r"^layer1\.(\d+)\.")
_SHOWN = 6  # how many missing/unexpected keys an error names


@dataclass
class AkamasterCheckpoint:
    """A model rebuilt from an akamaster file, with what the file says about itself."""

    model: CifarResNet
    model_name: str
    best_prec1: float | None
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    extra: dict = field(default_factory=dict)


def rename_key(key: str) -> str:
    """Their key -> ours: drop ``module.`` (DataParallel), ``linear.`` becomes ``fc.``."""
    key = key.removeprefix("module.")
    return "fc." + key.removeprefix("linear.") if key.startswith("linear.") else key


def depth_of(state_dict: dict[str, torch.Tensor]) -> int | None:
    """6n+2 from the number of blocks in stage 1; None if the keys show no blocks."""
    blocks = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
    return 6 * (max(blocks) + 1) + 2 if blocks else None


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], model_name: str, source: str = "the file"
) -> CifarResNet:
    """Build ``model_name`` and load their ``state_dict`` into it; ReproError on any mismatch."""
    if model_name not in MODELS:
        raise ReproError(
            f"--model {model_name!r} is not one of akamaster's CIFAR ResNets; "
            f"choose one of {', '.join(MODELS)}"
        )
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise ReproError(f"{source}: 'state_dict' is not a dict of named tensors")
    ours = {rename_key(k): v for k, v in state_dict.items()}
    model = cast(CifarResNet, build_model(model_name))  # every name in MODELS is one
    wanted = int(model_name.removeprefix("resnet"))
    found = depth_of(ours)
    if found is not None and found != wanted:
        raise ReproError(
            f"{source} holds a resnet{found} ({(found - 2) // 6} blocks per stage) but "
            f"--model is {model_name}; pass --model resnet{found}"
        )
    expected = model.state_dict()
    missing = [
        k for k in expected if k not in ours and not k.endswith(".num_batches_tracked")
    ]  # files from before PyTorch 0.4.1 have no num_batches_tracked; eval does not use it
    unexpected = [k for k in ours if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        raise ReproError(
            f"{source} does not fit akamaster's {model_name} layout ({'; '.join(parts)})"
        )
    for k, v in ours.items():
        if not isinstance(v, torch.Tensor):
            raise ReproError(f"{source}: {k!r} is a {type(v).__name__}, not a tensor")
        if v.shape != expected[k].shape:
            raise ReproError(
                f"{source}: {k!r} has shape {list(v.shape)}, {model_name} needs "
                f"{list(expected[k].shape)}"
            )
    model.load_state_dict(ours, strict=False)  # only num_batches_tracked may be absent
    return model


def _their_advice(path: Path) -> str:
    """What to do about one of their files that cannot be read."""
    return "download it again from akamaster/pytorch_resnet_cifar10 (pretrained_models/)"


def load_akamaster(
    path: str | os.PathLike, model_name: str, trust_pickle: bool = False
) -> AkamasterCheckpoint:
    """Read one of their ``.th`` files and rebuild ``model_name``. Their files hold tensors and
    plain values only, so no code runs (``trust_pickle`` lifts that, for files one trusts)."""
    path = Path(path)
    state = read_torch_file(path, "cpu", trust_pickle, advice=_their_advice)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise ReproError(
            f"checkpoint {path} was written by resnet-repro, not akamaster: drop --from akamaster "
            "(and --model); this project's checkpoints name their model"
        )
    if not isinstance(state, dict):
        raise ReproError(
            f"checkpoint {path} holds a {type(state).__name__}, not akamaster's "
            "{'state_dict', 'best_prec1'} dict"
        )
    if "state_dict" in state:
        weights = state["state_dict"]
    elif state and all(isinstance(v, torch.Tensor) for v in state.values()):
        weights = state  # a bare state dict
    else:
        raise ReproError(
            f"checkpoint {path} has no 'state_dict' (keys: {_names(sorted(map(str, state)))}); "
            "it is not an akamaster checkpoint"
        )
    model = convert_state_dict(weights, model_name, source=f"checkpoint {path}")
    best = state.get("best_prec1")
    if isinstance(best, torch.Tensor) and best.numel() == 1:
        best = best.item()
    best_prec1 = float(best) if isinstance(best, numbers.Real) else None  # numpy scalars too
    extra = {k: v for k, v in state.items() if k in ("epoch",) and isinstance(v, int)}
    return AkamasterCheckpoint(
        model=model, model_name=model_name, best_prec1=best_prec1, extra=extra
    )
