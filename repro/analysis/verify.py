"""`repro verify`: anyone's CIFAR-10 checkpoint, mapped onto the paper's nets and checked.

The file is read without running its code (:func:`repro.train.checkpoint.read_torch_file`), its
state_dict found (bare, or under ``state_dict`` / ``model`` / ``net``; ``module.`` and
``_orig_mod.`` prefixes dropped; a pickled module only with ``trust_pickle``), and mapped onto a
reference net by structure (:mod:`repro.analysis.structure`). An option-A ResNet and the plain net
of its depth have the same weights: both readings are evaluated and the one with the lower test
error is taken (a trained net is far better under the one it was trained as), unless ``model``
names one. Then: the test error with a 95 % Wilson score interval, loss, per-class accuracy,
parameters against the paper, and the layer-response stds of Fig. 7.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.analysis.layer_response import layer_response_std
from repro.analysis.structure import (
    Match,
    build,
    mapped_state_dict,
    match_all,
    num_classes_of,
    units_of,
)
from repro.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from repro.errors import ReproError
from repro.models import IMAGENET_DEPTHS
from repro.models.complexity import count_params, paper_figures, params_agree
from repro.train.checkpoint import (
    FORMAT,
    exception_reason,
    read_torch_file,
    strip_wrapper_prefixes,
)
from repro.train.evaluate import EvalResult, checkpoint_normalization, evaluate

NORMALIZATIONS = ("imagenet", "per-channel", "per-pixel-mean")
WRAPPERS = ("state_dict", "model", "net", "model_state_dict")
Z95 = 1.959963984540054  # the 97.5 % normal quantile
CI_METHOD = "Wilson score"
IMAGENET_NAMES = frozenset(f"resnet{d}" for d in IMAGENET_DEPTHS)


@dataclass
class Foreign:
    """A foreign file's state_dict (prefixes dropped) and where in the file it was found."""

    state: dict[str, torch.Tensor]
    found: str
    recorded: Normalization | None = None  # what a resnet-repro checkpoint says it trained with


@dataclass
class Reading:
    """The weights read as one reference net: the model, its match and its evaluation."""

    match: Match
    model: nn.Module
    result: EvalResult | None = None


@dataclass
class Normalization:
    """How inputs are normalised: a name, per-channel mean/std, or a mean image."""

    name: str
    source: str
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    mean_image: torch.Tensor | None = field(default=None, repr=False)


class PixelMeanInput(nn.Module):
    """Subtract a per-pixel mean image from [0, 1] inputs, then run the net (the paper's Sec. 4.2
    "per-pixel mean subtracted"); Fig. 7's response layers are the inner net's."""

    def __init__(self, net: nn.Module, mean_image: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.mean_image: torch.Tensor
        self.register_buffer("mean_image", mean_image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - self.mean_image)

    def response_layers(self) -> Sequence[nn.Module]:
        return self.net.response_layers()  # type: ignore[operator]


def _tensor_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, torch.Tensor) for v in value.values())
    )


def find_state_dict(obj: Any, path: Path) -> Foreign:
    """The state_dict in what ``torch.load`` returned; ReproError saying what was there instead."""
    found = "a bare state_dict"
    recorded = None
    if isinstance(obj, nn.Module):
        obj, found = obj.state_dict(), f"a pickled {type(obj).__name__} module"
    elif (
        isinstance(obj, Mapping) and obj.get("format") == FORMAT and _tensor_dict(obj.get("model"))
    ):
        recorded = recorded_normalization(dict(obj), path)
        obj, found = obj["model"], "a resnet-repro checkpoint's 'model'"
    elif isinstance(obj, Mapping) and not _tensor_dict(obj):
        for name in WRAPPERS:
            inner = obj.get(name)
            if isinstance(inner, nn.Module):
                obj, found = inner.state_dict(), f"a pickled module under {name!r}"
                break
            if _tensor_dict(inner):
                obj, found = inner, f"a dict under {name!r}"
                break
    if not _tensor_dict(obj):
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else []
        what = f"a dict with keys {keys}" if keys else f"a {type(obj).__name__}"
        raise ReproError(
            f"checkpoint {path} holds {what}: no state_dict of tensors at its top level or under "
            f"{', '.join(repr(w) for w in WRAPPERS)}"
        )
    tensors = {strip_wrapper_prefixes(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    stripped = sorted(
        {
            k[: len(k) - len(strip_wrapper_prefixes(k))]
            for k in obj
            if strip_wrapper_prefixes(k) != k
        }
    )
    if stripped:
        found += f", keys prefixed {' / '.join(stripped)}"
    return Foreign(tensors, found, recorded)


def recorded_normalization(state: dict[str, Any], path: Path) -> Normalization:
    """The normalisation a resnet-repro checkpoint records (its config, its mean image)."""
    norm = checkpoint_normalization(state, f"checkpoint {path}")
    if isinstance(norm.mean, torch.Tensor):
        return Normalization(norm.name, norm.source, mean_image=norm.mean.float())
    return Normalization(norm.name, norm.source, tuple(norm.mean), tuple(norm.std))


def load_foreign(path: str | os.PathLike, trust_pickle: bool = False) -> Foreign:
    """Read a foreign checkpoint without running its code (unless ``trust_pickle``)."""
    path = Path(path)
    obj = read_torch_file(
        path,
        "cpu",
        trust_pickle,
        advice=lambda p: "use an intact copy",
        opt_in="`repro verify --trust-pickle`",
    )
    return find_state_dict(obj, path)


def wilson_interval(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion, in percent."""
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def sidecar_normalization(path: Path) -> Normalization | None:
    """``--normalize`` from ``CHECKPOINT.json`` beside the file: ``{"normalize": NAME}`` or
    ``{"mean": [3], "std": [3]}``; None if there is no such file."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return None
    try:
        config = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise ReproError(f"sidecar {sidecar} cannot be read: {exception_reason(exc)}") from None
    name = config.get("normalize") if isinstance(config, dict) else None
    if isinstance(name, str) and name in NORMALIZATIONS:
        return Normalization(name, f"sidecar {sidecar.name}")
    mean, std = (config.get(k) if isinstance(config, dict) else None for k in ("mean", "std"))
    if isinstance(mean, list) and isinstance(std, list) and _three(mean) and _three(std):
        return Normalization("per-channel", f"sidecar {sidecar.name}", tuple(mean), tuple(std))
    raise ReproError(
        f'sidecar {sidecar} says no normalisation: it needs "normalize" (one of '
        f'{", ".join(NORMALIZATIONS)}) or "mean" and "std" (3 numbers each)'
    )


def _three(values: Any) -> bool:
    return (
        isinstance(values, list)
        and len(values) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    )


def chosen_normalization(name: str | None, path: Path) -> Normalization:
    """``name`` (``--normalize``), else the sidecar's choice; ReproError if neither says."""
    chosen = Normalization(name, "--normalize") if name else sidecar_normalization(path)
    if chosen is None:
        raise ReproError(
            f"--normalize is required: the weights do not say how inputs were normalised; pass "
            f"one of {', '.join(NORMALIZATIONS)} (or write {path.name}.json beside the file)"
        )
    return chosen


def resolve_normalization(
    name: str | None, path: Path, train_images: torch.Tensor | None = None
) -> Normalization:
    """The normalisation to use: ``name``, else the sidecar's; never a silent default."""
    chosen = chosen_normalization(name, path)
    if chosen.name == "imagenet":
        chosen.mean, chosen.std = IMAGENET_MEAN, IMAGENET_STD
    elif chosen.name == "per-channel" and chosen.source == "--normalize":
        chosen.mean, chosen.std = CIFAR10_MEAN, CIFAR10_STD
    elif chosen.name == "per-pixel-mean":
        if train_images is None or train_images.numel() == 0:
            raise ReproError("--normalize per-pixel-mean needs the training images' mean image")
        chosen.mean_image = train_images.to(torch.float64).mean(dim=0).div(255).float()
    elif chosen.name not in NORMALIZATIONS:
        raise ReproError(f"--normalize {chosen.name!r}: use one of {', '.join(NORMALIZATIONS)}")
    return chosen


def readings(foreign: Foreign, path: Path, model: str | None = None) -> list[Reading]:
    """The reference nets the weights load into: one, or option A and plain (same weights)."""
    units, problems = units_of(foreign.state)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ReproError(f"checkpoint {path} cannot be mapped: {problems[0]}{more}")
    matches = match_all(units)
    fits = [m for m in matches if m.problem is None]
    if not fits:
        raise ReproError(f"checkpoint {path} matches no reference net: {_why_none(units, matches)}")
    if model is not None:
        chosen = [m for m in fits if model in (m.candidate.name, m.candidate.builder)]
        if not chosen:
            names = ", ".join(m.candidate.name for m in fits)
            raise ReproError(f"--model {model} does not fit the weights, which are {names}")
        fits = chosen
    out = []
    for m in fits:
        net = build(m.candidate)
        net.load_state_dict(mapped_state_dict(m, foreign.state, net))
        out.append(Reading(m, net))
    return out


def _why_none(units: list, matches: list[Match]) -> str:
    convs = [u for u in units if u.layer.kind == "conv"]
    if not matches:
        first = convs[0].describe() if convs else "no convolution at all"
        return (
            f"it is not a CIFAR/ImageNet ResNet or plain net of the paper: its first layer is "
            f"{first}, neither the CIFAR stem (conv [16, 3, 3, 3] + BN) nor the ImageNet one "
            f"(conv [64, 3, 7, 7] + BN); it has {len(convs)} conv layers, "
            f"{sum(1 for u in units if u.bn)} with BN, {len(units) - len(convs)} linear"
        )
    best = matches[0]
    return f"closest is {best.candidate.name} (option {best.candidate.shortcut}): {best.problem}"


def class_count_problem(readings_: list[Reading], classes: int) -> str | None:
    """Why the head cannot be evaluated on CIFAR-10's classes, or None."""
    units, _ = units_of(readings_[0].model.state_dict())
    k = num_classes_of(units)
    if k == classes:
        return None
    hint = {100: " (CIFAR-100?)", 1000: " (ImageNet?)"}.get(k, "")
    return f"its head has {k} outputs{hint}, not CIFAR-10's {classes} classes"


IMAGENET_PARAMS_SOURCE = "torchvision's count (Table 1 prints none)"


def params_info(reading: Reading) -> dict[str, Any]:
    """Exact parameter count and the reference figure beside it: Table 6 for the CIFAR nets;
    for the ImageNet nets torchvision's counts, since Table 1 prints none."""
    c = reading.match.candidate
    params = count_params(reading.model)
    imagenet = c.name in IMAGENET_NAMES
    paper = paper_figures().get(c.name, {}).get("params_m")
    if c.shortcut in ("B", "C") and not imagenet:
        paper = None  # Table 6 lists option-A nets only
    return {
        "exact": params,
        "paper_m": paper,
        "agrees": None if paper is None else params_agree(params, paper),
        "paper_source": None
        if paper is None
        else (IMAGENET_PARAMS_SOURCE if imagenet else "Table 6"),
    }


def _wrapped(model: nn.Module, norm: Normalization) -> nn.Module:
    return PixelMeanInput(model, norm.mean_image) if norm.mean_image is not None else model


def evaluate_reading(
    reading: Reading,
    norm: Normalization,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    classes: int,
) -> EvalResult:
    """Test error, loss and per-class accuracy of one reading (stored on it too)."""
    net = _wrapped(reading.model, norm).to(device)
    try:
        reading.result = evaluate(
            net, images, labels, norm.mean, norm.std, device=device, num_classes=classes
        )
    except ValueError as exc:
        raise ReproError(f"cannot evaluate {reading.match.candidate.name}: {exc}") from None
    return reading.result


def decide(readings_: list[Reading], model: str | None) -> tuple[Reading, str]:
    """The reading to report and how it was chosen (structure, --model, or function)."""
    if len(readings_) == 1:
        if model is not None:
            return readings_[0], f"--model {model}"
        return readings_[0], "structure: the only reference net these weights fit"
    if any(r.result is None for r in readings_):
        names = " or ".join(r.match.candidate.name for r in readings_)
        raise ReproError(
            f"the weights fit {names} alike and without a CIFAR-10 head their function cannot "
            "tell them apart: pass --model"
        )
    ranked = sorted(readings_, key=lambda r: r.result.error_percent if r.result else 0.0)
    best, other = ranked[0], ranked[1]
    assert best.result is not None and other.result is not None
    n = best.result.n
    lo, hi = wilson_interval(round(best.result.error_percent * n / 100), n)
    clear = other.result.error_percent > hi
    shown = " vs ".join(
        f"{r.match.candidate.name} {r.result.error_percent:.2f} %" for r in ranked if r.result
    )
    how = (
        f"function: the weights fit {best.match.candidate.name} and {other.match.candidate.name} "
        f"alike; test error {shown}; the lower error decides"
    )
    if not clear:
        how += " (inconclusive: the errors are within the 95 % interval; pass --model)"
    return best, how


def response_info(reading: Reading, norm: Normalization, images: torch.Tensor) -> dict[str, Any]:
    """Fig. 7 for the chosen reading: per-layer response stds and their mean."""
    net = _wrapped(reading.model, norm)
    resp = layer_response_std(net, images, mean=norm.mean, std=norm.std)
    names = [n.removeprefix("net.") for n in resp.names]
    return {
        "mean_response_std": resp.mean_std,
        "layers": [{"name": n, "std": s} for n, s in zip(names, resp.std)],
        "num_images": resp.num_images,
    }


def test_info(result: EvalResult, classes: Sequence[str]) -> dict[str, Any]:
    errors = round(result.error_percent * result.n / 100)
    return {
        "n": result.n,
        "error": result.error_percent,
        "ci95": list(wilson_interval(errors, result.n)),
        "ci_method": CI_METHOD,
        "loss": result.loss,
        "per_class_accuracy": result.per_class_by_name(classes),
    }


SHORTCUT_MEANING = {
    "A": "A: no parameters on any shortcut (identity; zero-padded where dimensions grow)",
    "B": "B: 1x1 projections where dimensions grow, identity elsewhere",
    "C": "C: 1x1 projections on every block",
    None: "none: a plain net, no shortcuts",
}


def verify(
    path: str | os.PathLike,
    normalize: str | None,
    data: Any,
    *,
    model: str | None = None,
    trust_pickle: bool = False,
    device: torch.device | None = None,
    limit: int | None = None,
    trunk_only: bool = False,
    foreign: Foreign | None = None,
) -> dict[str, Any]:
    """Everything `repro verify` reports about a foreign checkpoint, as a JSON-ready dict.

    ``data`` is a loaded :class:`repro.data.CIFAR10`; ``limit`` evaluates the first ``limit``
    test images only; ``trunk_only`` skips the test error (for a head of another class count);
    ``foreign``: the file as :func:`load_foreign` already read it. A resnet-repro checkpoint
    without ``normalize`` is evaluated with the normalisation it records.
    """
    path = Path(path)
    device = device or torch.device("cpu")
    foreign = foreign or load_foreign(path, trust_pickle)
    if normalize is None and foreign.recorded is not None:
        norm = foreign.recorded  # our own checkpoint says how it was trained
    else:
        norm = resolve_normalization(normalize, path, data.train_images)
    found = readings(foreign, path, model)
    images, labels = data.test_images[:limit], data.test_labels[:limit]
    if images.shape[0] == 0:
        raise ReproError(f"{data.root} has no test images to verify on")
    problem = class_count_problem(found, len(data.classes))
    if problem and not trunk_only:
        raise ReproError(
            f"checkpoint {path}: {problem}; pass --trunk-only to verify its structure and layer "
            "responses without the test error"
        )
    if not problem:
        for reading in found:
            evaluate_reading(reading, norm, images, labels, device, len(data.classes))
    chosen, how = decide(found, model)
    return _report(path, foreign, found, chosen, how, norm, data, images)


def _report(
    path: Path,
    foreign: Foreign,
    found: list[Reading],
    chosen: Reading,
    how: str,
    norm: Normalization,
    data: Any,
    images: torch.Tensor,
) -> dict[str, Any]:
    c = chosen.match.candidate
    units, _ = units_of(chosen.model.state_dict())
    return {
        "checkpoint": str(path),
        "found": foreign.found,
        "model": c.name,
        "model_kwargs": {"builder": c.builder, **c.kwargs},
        "decided_by": how,
        "readings": [
            {
                "model": r.match.candidate.name,
                "shortcut": r.match.candidate.shortcut,
                "test_error": r.result.error_percent if r.result else None,
            }
            for r in found
        ],
        "shortcut": c.shortcut,
        "shortcut_meaning": SHORTCUT_MEANING[c.shortcut],
        "num_classes": num_classes_of(units),
        "mapped": {"layers": len(chosen.match.pairs), "tensors": len(foreign.state)},
        "params": params_info(chosen),
        "normalization": {
            "name": norm.name,
            "source": norm.source,
            "mean": None if norm.mean_image is not None else list(norm.mean),
            "std": None if norm.mean_image is not None else list(norm.std),
        },
        "data_root": str(data.root),
        "data_official": bool(data.official),
        "test": test_info(chosen.result, data.classes) if chosen.result else None,
        "fig7": response_info(chosen, norm, images),
    }
