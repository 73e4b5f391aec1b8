"""`repro verify`: anyone's CIFAR-10 checkpoint, mapped onto the paper's nets and checked.

The file is read without running its code (:mod:`repro.foreign.checkpoint`), mapped onto a reference
net by structure (:mod:`repro.foreign.structure`; a convolution's bias before BN folded into BN's
running mean), and read in every way its weights allow: an option-A ResNet in each shortcut layout
seen in the wild, and the plain net of its depth (:mod:`repro.foreign.readings`). The reading
with the lowest test error among the plausible ones is taken, unless ``model``/``layout`` name
one; none plausible is a refusal. Then: the test error with a 95 % Wilson score interval, loss,
per-class accuracy, parameters against the paper, the training state the file records, a check of
the normalisation against the standard ones, and the layer-response stds of Fig. 7.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch

from repro.analysis.layer_response import layer_response_std
from repro.errors import ReproError
from repro.evaluate import EvalResult
from repro.foreign.checkpoint import Foreign, find_state_dict, load_foreign, training_notes
from repro.foreign.layouts import Layout
from repro.foreign.normalizations import (
    NORMALIZATIONS,
    PIXEL_MEAN,
    PRESETS,
    Normalization,
    chosen_normalization,
    describe,
    preset,
    with_mean_image,
)
from repro.foreign.readings import (
    PLAUSIBLE_MAX_ERROR,
    Reading,
    decide,
    evaluate_all,
    interval,
    measure,
    reading_rows,
    readings,
    wilson_interval,
    wrapped,
)
from repro.foreign.structure import folded_biases, num_classes_of, units_of
from repro.models import IMAGENET_DEPTHS
from repro.models.complexity import count_params, paper_figures, params_agree

__all__ = [
    "NORMALIZATIONS",
    "Foreign",
    "Reading",
    "chosen_normalization",
    "find_state_dict",
    "load_foreign",
    "readings",
    "verify",
    "wilson_interval",
]

CI_METHOD = "Wilson score"
NORM_CHECK_IMAGES = 200  # enough to tell a far worse normalisation (+-7 pp at worst)
IMAGENET_NAMES = frozenset(f"resnet{d}" for d in IMAGENET_DEPTHS)


def class_count_problem(readings_: list[Reading], classes: int) -> str | None:
    """Why the head cannot be evaluated on CIFAR-10's classes, or None."""
    units, _ = units_of(readings_[0].model.state_dict())
    k = num_classes_of(units)
    if k == classes:
        return None
    hint = {100: " (CIFAR-100?)", 1000: " (ImageNet?)"}.get(k, "")
    return f"its head has {k} outputs{hint}, not CIFAR-10's {classes} classes"


IMAGENET_PARAMS_SOURCE = "torchvision's count (Table 1 prints none)"


class ParamsInfo(TypedDict):
    """The chosen reading's parameter count beside the paper's (``--json``: ``params``)."""

    exact: int
    paper_m: float | None
    agrees: bool | None
    paper_source: str | None


class LayerStd(TypedDict):
    name: str
    std: float


class ResponseInfo(TypedDict):
    """Fig. 7 of the chosen reading (``--json``: ``fig7``)."""

    mean_response_std: float
    layers: list[LayerStd]
    num_images: int


class ErrorOnTest(TypedDict):
    """Test error with its 95 % interval (``--json``: ``test``)."""

    n: int
    error: float
    ci95: list[float]
    ci_method: str
    loss: float
    per_class_accuracy: dict[str, float | None]


class NormalizationRow(TypedDict):
    """One normalisation's error on the first test images (``--json``: ``normalization_check``)."""

    name: str
    error: float
    n: int
    chosen: bool


def params_info(reading: Reading) -> ParamsInfo:
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


def response_info(reading: Reading, norm: Normalization, images: torch.Tensor) -> ResponseInfo:
    """Fig. 7 for the chosen reading: per-layer response stds and their mean."""
    net = wrapped(reading.model, norm)
    resp = layer_response_std(net, images, mean=norm.mean, std=norm.std)
    names = [n.removeprefix("net.") for n in resp.names]
    return {
        "mean_response_std": resp.mean_std,
        "layers": [{"name": n, "std": s} for n, s in zip(names, resp.std)],
        "num_images": resp.num_images,
    }


def test_info(result: EvalResult, classes: Sequence[str]) -> ErrorOnTest:
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


def normalization_check(
    chosen: Reading,
    norm: Normalization,
    data: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
) -> tuple[list[NormalizationRow], list[str]]:
    """The chosen reading under every standard normalisation on the first test images, and a
    warning when one of them is clearly better (95 % intervals apart) than the chosen one."""
    k = min(NORM_CHECK_IMAGES, int(labels.numel()))
    classes = len(data.classes)
    mine = measure(chosen, norm, images[:k], labels[:k], device, classes)
    rows: list[NormalizationRow] = [
        {"name": norm.name, "error": mine.error_percent, "n": k, "chosen": True}
    ]
    lo, _ = interval(mine)
    warn = []
    for name in (PIXEL_MEAN, *PRESETS):
        if name == norm.name:
            continue
        other = with_mean_image(preset(name, "check"), data.train_images)
        result = measure(chosen, other, images[:k], labels[:k], device, classes)
        rows.append({"name": name, "error": result.error_percent, "n": k, "chosen": False})
        if interval(result)[1] < lo:
            warn.append(
                f"normalisation {name} scores {result.error_percent:.2f} % on the first {k} test "
                f"images where the chosen {norm.name} scores {mine.error_percent:.2f} %: the net "
                f"was likely trained with another normalisation (try --normalize {name})"
            )
    return rows, warn


def better_normalization(
    found: list[Reading],
    norm: Normalization,
    data: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
) -> str:
    """For a refusal: ``; with --normalize X, READING scores E %`` when another standard
    normalisation makes the best-measured reading plausible, else an empty string."""
    measured = [r for r in found if r.measured is not None]
    if not measured:
        return ""
    best = min(measured, key=lambda r: r.measured.error_percent if r.measured else 100.0)
    rows, _ = normalization_check(best, norm, data, images, labels, device)
    good = sorted((r["error"], r["name"]) for r in rows if not r["chosen"])
    if not good or good[0][0] > PLAUSIBLE_MAX_ERROR:
        return ""
    error, name = good[0]
    return f"; with --normalize {name}, {best.name} scores {error:.2f} % on the first test images"


def verify(
    path: str | os.PathLike,
    normalize: str | None,
    data: Any,
    *,
    model: str | None = None,
    layout: Layout | None = None,
    mean: str | None = None,
    std: str | None = None,
    trust_pickle: bool = False,
    device: torch.device | None = None,
    limit: int | None = None,
    trunk_only: bool = False,
    foreign: Foreign | None = None,
    found: list[Reading] | None = None,
    check_normalization: bool = True,
) -> dict[str, Any]:
    """Everything `repro verify` reports about a foreign checkpoint, as a JSON-ready dict.

    ``data`` is a loaded :class:`repro.data.CIFAR10`; ``limit`` evaluates the first ``limit``
    test images only; ``trunk_only`` skips the test error (for a head of another class count);
    ``foreign``/``found``: the file and its readings, already read; ``check_normalization``
    scores the chosen reading under the other standard normalisations too. A resnet-repro
    checkpoint without ``normalize``/``mean`` is evaluated with the normalisation it records.
    """
    path = Path(path)
    device = device or torch.device("cpu")
    foreign = foreign or load_foreign(path, trust_pickle)
    found = found or readings(foreign, path, model, layout)
    recorded = normalize is None and mean is None and foreign.recorded is not None
    norm = foreign.recorded if recorded else chosen_normalization(normalize, path, mean, std)
    norm = with_mean_image(norm, data.train_images)
    images, labels = data.test_images[:limit], data.test_labels[:limit]
    if images.shape[0] == 0:
        raise ReproError(f"{data.root} has no test images to verify on")
    classes = len(data.classes)
    if _evaluable(found, classes, path, trunk_only):
        evaluate_all(found, norm, images, labels, device, classes)
    flags = [f"--model {model}" if model else "", f"--layout {layout.describe()}" if layout else ""]
    forced = " ".join(f for f in flags if f) or None
    try:
        named = foreign.named is not None and len(found) == 1
        forced = forced or ("the file: a resnet-repro checkpoint names its net" if named else None)
        chosen, how, warnings = decide(found, forced, classes, path, named)
    except ReproError as exc:
        hint = (
            better_normalization(found, norm, data, images, labels, device) if not recorded else ""
        )
        raise ReproError(f"{exc}{hint}") from None
    checks: list[NormalizationRow] = []
    if chosen.result is not None and not recorded and check_normalization:
        checks, more = normalization_check(chosen, norm, data, images, labels, device)
        warnings += more
    out = _report(path, foreign, found, chosen, how, norm, data, images)
    out |= {"normalization_check": checks, "warnings": warnings}
    return out


def _evaluable(found: list[Reading], classes: int, path: Path, trunk_only: bool) -> bool:
    """Whether the readings' heads fit the data's classes; refused unless ``trunk_only``."""
    problem = class_count_problem(found, classes)
    if problem and not trunk_only:
        raise ReproError(
            f"checkpoint {path}: {problem}; pass --trunk-only to verify its structure and layer "
            "responses without the test error"
        )
    return not problem


def structure_notes(foreign: Foreign, chosen: Reading) -> list[str]:
    """What the mapping did besides copying tensors, and what the file says of its training."""
    notes = []
    folded = folded_biases(chosen.match)
    if folded:
        notes.append(
            f"{folded} convolution biases folded into the BN after them (running mean "
            "mu' = mu - b; exact, the outputs are unchanged)"
        )
    return notes + training_notes(foreign)


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
    lay = chosen.layout
    return {
        "checkpoint": str(path),
        "found": foreign.found,
        "model": c.name,
        "model_kwargs": {"builder": c.builder, **c.kwargs},
        "layout": None if lay is None else {"padding": lay.padding, "subsample": lay.subsample},
        "decided_by": how,
        "readings": reading_rows(found),
        "shortcut": c.shortcut,
        "shortcut_meaning": SHORTCUT_MEANING[c.shortcut]
        + ("" if lay is None else f"; layout: {lay.describe()}"),
        "num_classes": num_classes_of(units),
        "mapped": {"layers": len(chosen.match.pairs), "tensors": len(foreign.state)},
        "notes": structure_notes(foreign, chosen),
        "params": params_info(chosen),
        "normalization": {
            "name": norm.name,
            "source": norm.source,
            "shown": describe(norm),
            "mean": None if norm.mean_image is not None else list(norm.mean),
            "std": None if norm.mean_image is not None else list(norm.std),
        },
        "data_root": str(data.root),
        "data_official": bool(data.official),
        "test": test_info(chosen.result, data.classes) if chosen.result else None,
        "fig7": response_info(chosen, norm, images),
    }
