"""The readings of one foreign checkpoint, and how `repro verify` chooses among them by function.

A checkpoint's weights may fit several reference nets alike: an option-A ResNet in every shortcut
layout of :mod:`repro.foreign.layouts` and the plain net of its depth have the same weights. Each
fit is a *reading*. Every reading is evaluated (first on up to :data:`SCREEN_IMAGES` test images,
then on all of them unless clearly worse), and the one with the lowest test error is chosen, but
only among *plausible* readings: a CIFAR-10 net above :data:`PLAUSIBLE_MAX_ERROR` is no trained
net, whatever reading wins. When no reading is plausible the weights are refused, listing what
was tried; a lone reading near chance (its 95 % interval reaching within :data:`CHANCE_MARGIN`
of chance) is refused too: its error measures no trained net.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.errors import ReproError
from repro.evaluate import EvalResult, evaluate, refuse_nan_logits
from repro.foreign.checkpoint import Foreign
from repro.foreign.layouts import DEFAULT, LAYOUTS, Layout, apply_layout
from repro.foreign.normalizations import Normalization
from repro.foreign.structure import (
    Match,
    build,
    mapped_state_dict,
    match_all,
    units_of,
    weights_problem,
)

PLAUSIBLE_MAX_ERROR = 50.0  # % test error; chance on CIFAR-10 is 90 %
CHANCE_MARGIN = (
    10.0  # pp: a lone reading whose 95 % interval reaches chance - 10 pp measures nothing
)
SCREEN_IMAGES = 500
Z95 = 1.959963984540054  # the 97.5 % normal quantile


@dataclass
class Reading:
    """The weights read as one reference net (in one option-A layout): model, match, results."""

    match: Match
    model: nn.Module
    layout: Layout | None = None
    result: EvalResult | None = None  # on every test image
    screen: EvalResult | None = None  # on the first SCREEN_IMAGES

    @property
    def name(self) -> str:
        """e.g. ``resnet20 [A: pad after, avg-pool]``, ``plain20``."""
        c = self.match.candidate
        return c.name if self.layout is None else f"{c.name} [A: {self.layout.describe()}]"

    @property
    def measured(self) -> EvalResult | None:
        return self.result or self.screen


def wilson_interval(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion, in percent."""
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def interval(result: EvalResult) -> tuple[float, float]:
    return wilson_interval(round(result.error_percent * result.n / 100), result.n)


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


def fitting_matches(foreign: Foreign, path: Path, model: str | None) -> list[Match]:
    """The reference nets the weights fit by structure (``model`` keeps the one named)."""
    problem = weights_problem(foreign.state)
    if problem:
        raise ReproError(f"checkpoint {path}: {problem}")
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
    return fits


def readings(
    foreign: Foreign, path: Path, model: str | None = None, layout: Layout | None = None
) -> list[Reading]:
    """Every reading of the weights: each fitting net, option A in each layout (or ``layout``).
    Checked by structure only, before any data is read."""
    fits = fitting_matches(foreign, path, model)
    if foreign.named is not None:  # our own checkpoint names its net, in our own layout
        name, shortcut = foreign.named
        own = [
            m
            for m in fits
            if name in (m.candidate.name, m.candidate.builder)
            and shortcut in (None, m.candidate.shortcut)
        ]
        fits, layout = own or fits, layout or (DEFAULT if own else None)
    if layout is not None and not any(m.candidate.shortcut == "A" for m in fits):
        names = ", ".join(m.candidate.name for m in fits)
        raise ReproError(f"--layout is for option-A ResNets; the weights fit {names} only")
    out = []
    for m in fits:
        state = mapped_state_dict(m, foreign.state, build(m.candidate))
        option_a = m.candidate.shortcut == "A"
        for lay in ((layout,) if layout else LAYOUTS) if option_a else (None,):
            net = build(m.candidate)
            net.load_state_dict(state)
            if lay is not None and lay != DEFAULT:
                apply_layout(net, lay)
            out.append(Reading(m, net, lay))
    return out


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


def wrapped(model: nn.Module, norm: Normalization) -> nn.Module:
    return PixelMeanInput(model, norm.mean_image) if norm.mean_image is not None else model


def measure(
    reading: Reading,
    norm: Normalization,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    classes: int,
) -> EvalResult:
    """Test error, loss and per-class accuracy of one reading; a NaN loss is refused."""
    net = wrapped(reading.model, norm).to(device)
    try:
        result = evaluate(
            net, images, labels, norm.mean, norm.std, device=device, num_classes=classes
        )
    except ValueError as exc:
        raise ReproError(f"cannot evaluate {reading.name}: {exc}") from None
    return refuse_nan_logits(result, reading.name)


def evaluate_all(
    found: list[Reading],
    norm: Normalization,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    classes: int,
) -> None:
    """Evaluate every reading: screened on the first images, then on all unless clearly worse
    (lower 95 % bound above the plausible limit or above the best one's upper bound)."""
    n = int(labels.numel())
    k = n if len(found) == 1 else min(n, SCREEN_IMAGES)
    for r in found:
        r.screen = measure(r, norm, images[:k], labels[:k], device, classes)
    if k == n:
        for r in found:
            r.result = r.screen
        return
    best = min(found, key=lambda r: r.screen.error_percent if r.screen else math.inf)
    assert best.screen is not None
    _, best_hi = interval(best.screen)
    for r in found:
        assert r.screen is not None
        lo, _ = interval(r.screen)
        if lo <= PLAUSIBLE_MAX_ERROR and lo <= best_hi:
            r.result = measure(r, norm, images, labels, device, classes)


def _shown(r: Reading) -> str:
    m = r.measured
    if m is None:
        return f"{r.name} not measured"
    where = "" if r.result is not None else f" on the first {m.n} images"
    return f"{r.name} {m.error_percent:.2f} %{where}"


def _lone(
    found: list[Reading], forced: str | None, classes: int, named: bool = False
) -> tuple[Reading, str, list[str]]:
    """The only reading: refused at chance level (unless the file itself ``named`` its net: then
    its error is that net's, however poor), warned above the plausible limit."""
    r = found[0]
    how = forced or "structure: the only reference net these weights fit"
    if r.result is None:
        return r, how, []
    chance = 100 * (1 - 1 / classes)
    lo, hi = interval(r.result)
    if hi >= chance - CHANCE_MARGIN and not named:
        raise ReproError(
            f"{r.name}, the only reading of the weights, scores {r.result.error_percent:.2f} % "
            f"test error (95 % CI {lo:.1f}-{hi:.1f} %), chance level for {classes} classes "
            f"({chance:.0f} %): that measures no trained net; check the normalisation "
            "(--normalize, --mean/--std) and that the file holds trained CIFAR-10 weights"
        )
    warn = []
    if r.result.error_percent > PLAUSIBLE_MAX_ERROR:
        warn.append(
            f"{r.name} scores {r.result.error_percent:.2f} %, above {PLAUSIBLE_MAX_ERROR:.0f} %: "
            "far from a trained net (an early checkpoint, or the wrong normalisation?)"
        )
    return r, how, warn


def _unmeasured(found: list[Reading], forced: str | None) -> tuple[Reading, str, list[str]]:
    """No test error (--trunk-only): only the layouts of one net can be settled, by assumption."""
    if len({r.match.candidate.name for r in found}) > 1:
        names = " or ".join(sorted({r.match.candidate.name for r in found}))
        raise ReproError(
            f"the weights fit {names} alike and without a CIFAR-10 head their function cannot "
            "tell them apart: pass --model"
        )
    (chosen,) = [r for r in found if r.layout == DEFAULT]
    how = (
        f"{forced or 'structure'}; option-A layout not tested without a "
        f"test error: {DEFAULT.describe()} assumed (pass --layout)"
    )
    return chosen, how, []


def decide(
    found: list[Reading],
    forced: str | None,
    classes: int = 10,
    path: Path | None = None,
    named: bool = False,
) -> tuple[Reading, str, list[str]]:
    """The reading to report, how it was chosen (``forced``: the flags that chose it, e.g.
    ``--model plain20``; ``named``: the file names its net) and warnings; ReproError if none is
    plausible."""
    if len(found) == 1:
        return _lone(found, forced, classes, named)
    if any(r.measured is None for r in found):
        return _unmeasured(found, forced)
    ranked = sorted(found, key=lambda r: r.measured.error_percent if r.measured else math.inf)
    plausible = [r for r in ranked if r.result and r.result.error_percent <= PLAUSIBLE_MAX_ERROR]
    if not plausible:
        raise ReproError(
            f"checkpoint {path or ''}: no reading of the weights is plausible: all "
            f"{len(found)} tried score above {PLAUSIBLE_MAX_ERROR:.0f} % test error (chance is "
            f"{100 * (1 - 1 / classes):.0f} %): {'; '.join(_shown(r) for r in ranked)}; check the "
            "normalisation (--normalize, --mean/--std) and that the file holds trained CIFAR-10 "
            "weights, or pass --model (and --layout) to measure one reading"
        )
    best = plausible[0]
    others = [r for r in ranked if r is not best]
    assert best.result is not None
    _, hi = interval(best.result)
    runner = others[0]
    rest = len(others) - 1
    how = (
        f"function: the weights fit {len(found)} readings alike; test error {_shown(best)} vs "
        f"{_shown(runner)}"
        + (f" and {rest} more (see --json)" if rest else "")
        + "; the lowest error among plausible readings decides"
    )
    warn = []
    if runner.measured is not None and runner.measured.error_percent <= hi:
        how += " (inconclusive: the next is within the 95 % interval; pass --model/--layout)"
        warn.append(f"readings {best.name} and {runner.name} score alike: {how}")
    return best, how, warn


def reading_rows(found: list[Reading]) -> list[dict[str, Any]]:
    """Every reading for --json: its net, shortcut layout and errors (None where not measured)."""
    return [
        {
            "model": r.match.candidate.name,
            "reading": r.name,
            "shortcut": r.match.candidate.shortcut,
            "layout": None
            if r.layout is None
            else {"padding": r.layout.padding, "subsample": r.layout.subsample},
            "test_error": r.result.error_percent if r.result else None,
            "screen_error": r.screen.error_percent if r.screen else None,
            "screen_n": r.screen.n if r.screen else None,
            "plausible": None
            if r.measured is None
            else r.measured.error_percent <= PLAUSIBLE_MAX_ERROR,
        }
        for r in found
    ]
