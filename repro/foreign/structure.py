"""Map a foreign state_dict onto the paper's nets by structure: layer types and shapes, not names.

A state_dict's tensors are grouped, in their stored order, into layers by the module that holds
them (the key up to its last dot): a convolution (a 4-D ``weight``, maybe a ``bias``), a BatchNorm
(``weight``, ``bias``, ``running_mean``, ``running_var``, maybe ``num_batches_tracked``) or a linear
layer (a 2-D ``weight`` and a ``bias``). Each convolution is paired with the first unpaired BN of its
width that follows it, which makes a *unit*; the linear layer is the head.

A reference net (``repro.models``) is split the same way, and its units into blocks (the stem, each
residual block, the head). The foreign units are consumed block by block in stored order; within a
block they are matched to the reference's by signature (kind, weight shape, bias, BN width), ties in
stored order. So an implementation that registers its projection before the 3x3 convolutions, or
names everything differently, still maps; one whose blocks are not contiguous in stored order does
not. The candidates come from the weights: CIFAR nets of depth 6n+2 from the number of 3x3
convolutions (options A, B, C and plain), ImageNet nets from a 7x7 stem (``resnet18_cifar`` from a
64-filter 3x3 stem). An option-A ResNet and the plain net of its depth match alike: their weights
are the same; only their function tells them apart (:mod:`repro.foreign.verify`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from repro.models import CIFAR_DEPTHS, IMAGENET_DEPTHS, PLAIN_CIFAR_DEPTHS, build_model

BN_ROLES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
_BN_NEEDED = frozenset({"weight", "bias", "running_mean", "running_var"})


@dataclass(frozen=True)
class Layer:
    """One module's tensors: ``kind`` conv, bn or linear; ``shape`` of its weight."""

    kind: str
    prefix: str
    shape: tuple[int, ...]
    bias: bool
    keys: dict[str, str] = field(compare=False)  # role (weight, running_mean, ...) -> full key


@dataclass(frozen=True)
class Unit:
    """A convolution with its BN (``bn`` None if it has none), or the linear head."""

    layer: Layer
    bn: Layer | None

    @property
    def folds_bias(self) -> bool:
        """A convolution's bias before its BN, which folds into BN's running mean exactly."""
        return self.layer.kind == "conv" and self.layer.bias and self.bn is not None

    @property
    def signature(self) -> tuple[Any, ...]:
        """What matching compares: a bias that folds into the BN after it does not count."""
        bn = self.bn.shape if self.bn else None
        return (self.layer.kind, self.layer.shape, self.layer.bias and not self.folds_bias, bn)

    def describe(self) -> str:
        """e.g. ``conv [16, 16, 3, 3] + BN (layer1.0.conv1)``."""
        what = f"{self.layer.kind} {list(self.layer.shape)}"
        if self.layer.bias and self.layer.kind == "conv":
            what += " with bias"
        if self.layer.kind == "conv":
            what += " + BN" if self.bn else ", no BN after it"
        return f"{what} ({self.layer.prefix or '<top level>'})"


@dataclass(frozen=True)
class Candidate:
    """A reference net to try: ``build_model(builder, **kwargs)``, shown as ``name``."""

    name: str
    builder: str
    kwargs: dict[str, object]
    shortcut: str | None  # "A", "B", "C"; None for a plain net


@dataclass
class Match:
    """The outcome of matching one candidate: pairs (foreign unit, our unit) or a problem."""

    candidate: Candidate
    pairs: list[tuple[Unit, Unit]]
    problem: str | None
    score: int  # units matched before the first problem


def _classify(prefix: str, tensors: dict[str, torch.Tensor]) -> Layer | str:
    """The layer these tensors make, or why they make none."""
    roles, keys = set(tensors), {r: f"{prefix}.{r}" if prefix else r for r in tensors}
    weight = tensors.get("weight")
    where = f"{prefix or '<top level>'} ({', '.join(sorted(roles))})"
    if roles >= _BN_NEEDED and roles <= BN_ROLES:
        shapes = {tuple(tensors[r].shape) for r in _BN_NEEDED}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            return f"{where} looks like a BatchNorm but its tensors differ in shape"
        return Layer("bn", prefix, next(iter(shapes)), True, keys)
    if weight is not None and roles <= {"weight", "bias"} and weight.dim() in (2, 4):
        bias = tensors.get("bias")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            return f"{where} has a bias of shape {list(bias.shape)} for {weight.shape[0]} outputs"
        kind = "conv" if weight.dim() == 4 else "linear"
        return Layer(kind, prefix, tuple(weight.shape), bias is not None, keys)
    listed = ", ".join(f"{r} {list(t.shape)}" for r, t in tensors.items())
    return f"{where} is not a convolution, BatchNorm or linear layer ({listed})"


def group_layers(state: Mapping[str, torch.Tensor]) -> tuple[list[Layer], list[str]]:
    """The layers of a state_dict in stored order, and a line for each group that is none."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, role = key.rpartition(".")
        groups.setdefault(prefix, {})[role] = value
    layers, problems = [], []
    for prefix, tensors in groups.items():
        found = _classify(prefix, tensors)
        if isinstance(found, str):
            problems.append(found)
        else:
            layers.append(found)
    return layers, problems


def pair_units(layers: list[Layer]) -> tuple[list[Unit], list[str]]:
    """Each conv with the first unpaired BN of its width after it; linear layers alone."""
    bns = [i for i, layer in enumerate(layers) if layer.kind == "bn"]
    used: set[int] = set()
    units, problems = [], []
    for i, layer in enumerate(layers):
        if layer.kind == "bn":
            continue
        bn = None
        if layer.kind == "conv":
            width = (layer.shape[0],)
            j = next((j for j in bns if j > i and j not in used and layers[j].shape == width), None)
            if j is not None:
                used.add(j)
                bn = layers[j]
        units.append(Unit(layer, bn))
    for j in bns:
        if j not in used:
            problems.append(f"BatchNorm {layers[j].prefix} {list(layers[j].shape)} follows no conv")
    return units, problems


def units_of(state: Mapping[str, torch.Tensor]) -> tuple[list[Unit], list[str]]:
    layers, problems = group_layers(state)
    units, more = pair_units(layers)
    return units, problems + more


def _block_id(prefix: str) -> str:
    """Our nets' block of a module: ``layer2.3.conv1`` -> ``layer2.3``; the stem and head alone."""
    parts = prefix.split(".")
    return ".".join(parts[:2]) if parts[0].startswith("layer") and len(parts) > 2 else prefix


def reference_blocks(model: nn.Module) -> tuple[list[list[Unit]], list[Unit]]:
    """Our net's body units split into blocks (stem, each residual block), and its head units."""
    units, _ = units_of(model.state_dict())
    blocks: list[list[Unit]] = []
    for unit in units:
        if unit.layer.kind != "conv":
            continue
        if blocks and _block_id(blocks[-1][0].layer.prefix) == _block_id(unit.layer.prefix):
            blocks[-1].append(unit)
        else:
            blocks.append([unit])
    return blocks, [u for u in units if u.layer.kind == "linear"]


def _match_block(block: list[Unit], chunk: list[Unit]) -> tuple[list[tuple[Unit, Unit]], str]:
    """Ours to theirs by signature, ties in stored order; a problem line if one does not fit."""
    free = list(chunk)
    pairs: list[tuple[Unit, Unit]] = []
    for ours in block:
        theirs = next((u for u in free if u.signature == ours.signature), None)
        if theirs is None:
            where = _block_id(ours.layer.prefix)
            return pairs, (
                f"in block {where} the reference needs {ours.describe()} where the file has "
                f"{free[0].describe()}"
            )
        free.remove(theirs)
        pairs.append((theirs, ours))
    return pairs, ""


def match(units: list[Unit], candidate: Candidate, model: nn.Module) -> Match:
    """Match foreign ``units`` to the candidate's ``model`` block by block (see module doc)."""
    blocks, heads = reference_blocks(model)
    body = [u for u in units if u.layer.kind == "conv"]
    theirs_head = [u for u in units if u.layer.kind == "linear"]
    pairs: list[tuple[Unit, Unit]] = []
    pos = 0
    for block in blocks:
        chunk = body[pos : pos + len(block)]
        if len(chunk) < len(block):
            left = sum(len(b) for b in blocks) - pos
            problem = (
                f"missing layers: the file has {len(body)} conv layers, {candidate.name} "
                f"{pos + left}; the first missing is {block[len(chunk)].describe()}"
            )
            return Match(candidate, pairs, problem, len(pairs))
        found, problem = _match_block(block, chunk)
        pairs += found
        if problem:
            return Match(candidate, pairs, problem, len(pairs))
        pos += len(block)
    if pos < len(body):
        problem = (
            f"extra layers: the file has {len(body) - pos} conv layers more than "
            f"{candidate.name}'s {pos}, from {body[pos].describe()}"
        )
        return Match(candidate, pairs, problem, len(pairs))
    return _match_head(theirs_head, heads, candidate, pairs)


def _match_head(
    theirs: list[Unit], ours: list[Unit], candidate: Candidate, pairs: list[tuple[Unit, Unit]]
) -> Match:
    if len(theirs) != 1:
        problem = f"the file has {len(theirs)} linear layers; {candidate.name} has one, the head"
        return Match(candidate, pairs, problem, len(pairs))
    if theirs[0].signature != ours[0].signature:
        problem = f"its head is {theirs[0].describe()}, {candidate.name} needs {ours[0].describe()}"
        return Match(candidate, pairs, problem, len(pairs))
    return Match(candidate, pairs + [(theirs[0], ours[0])], None, len(pairs) + 1)


def num_classes_of(units: list[Unit]) -> int:
    """The head's outputs (10 if the file has no single linear layer)."""
    heads = [u for u in units if u.layer.kind == "linear"]
    return heads[-1].layer.shape[0] if len(heads) == 1 else 10


def cifar_name(depth: int, residual: bool) -> tuple[str, dict[str, object]]:
    """``resnet20`` / ``plain20`` when the zoo names that depth, else the generic builder."""
    named = CIFAR_DEPTHS if residual else PLAIN_CIFAR_DEPTHS
    prefix = "resnet" if residual else "plain"
    if depth in named:
        return f"{prefix}{depth}", {}
    return f"{prefix}_cifar", {"depth": depth}


def candidates(units: list[Unit]) -> list[Candidate]:
    """The reference nets the weights could be, from their stem and their number of 3x3 convs."""
    convs = [u.layer for u in units if u.layer.kind == "conv"]
    if not convs:
        return []
    k = num_classes_of(units)
    stem = convs[0].shape
    found = []
    if stem[:2] == (16, 3) and stem[2:] == (3, 3):
        n3 = sum(1 for c in convs if c.shape[2:] == (3, 3))
        depth = max(8, 6 * round((n3 - 1) / 6) + 2)
        for option in ("A", "B", "C"):
            builder, kw = cifar_name(depth, True)
            name = builder if builder != "resnet_cifar" else f"resnet{depth}"
            found.append(
                Candidate(name, builder, kw | {"shortcut": option, "num_classes": k}, option)
            )
        builder, kw = cifar_name(depth, False)
        found.append(Candidate(f"plain{depth}", builder, kw | {"num_classes": k}, None))
    elif stem == (64, 3, 7, 7):
        for d in IMAGENET_DEPTHS:
            found.append(Candidate(f"resnet{d}", f"resnet{d}", {"num_classes": k}, "B"))
        for d in (18, 34):
            found.append(Candidate(f"plain{d}", f"plain{d}", {"num_classes": k}, None))
    elif stem == (64, 3, 3, 3):
        found.append(Candidate("resnet18_cifar", "resnet18_cifar", {"num_classes": k}, "B"))
    return found


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """``torch.nn.init``'s in-place initialisers as no-ops: on the meta device they cost seconds
    of CPU on first use (they import torch's reference kernels) and initialise nothing."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def build(candidate: Candidate, meta: bool = False) -> nn.Module:
    """The candidate's net (on the meta device: shapes only, nothing allocated or initialised)."""
    if meta:
        with torch.device("meta"), _no_init():
            return build_model(candidate.builder, **candidate.kwargs)
    return build_model(candidate.builder, **candidate.kwargs)


def match_all(units: list[Unit]) -> list[Match]:
    """Every candidate's match, best (fewest problems, most units matched) first."""
    results = [match(units, c, build(c, meta=True)) for c in candidates(units)]
    return sorted(results, key=lambda m: (m.problem is not None, -m.score))


def mapped_state_dict(
    match_: Match, foreign: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Our model's state_dict with every mapped tensor taken from ``foreign``; a convolution's
    bias before BN is folded into BN's running mean, exactly: BN(Wx + b) with mean mu is BN(Wx)
    with mean mu - b (:func:`folded_biases` counts them)."""
    state = dict(model.state_dict())
    for theirs, ours in match_.pairs:
        layer_pairs = [(theirs.layer, ours.layer)]
        if theirs.bn is not None and ours.bn is not None:
            layer_pairs.append((theirs.bn, ours.bn))
        for t_layer, o_layer in layer_pairs:
            for role, key in o_layer.keys.items():
                if role in t_layer.keys:
                    state[key] = foreign[t_layer.keys[role]]
        if theirs.folds_bias and ours.bn is not None and not ours.layer.bias:
            assert theirs.bn is not None  # folds_bias says so
            bias = foreign[theirs.layer.keys["bias"]]
            mean = foreign[theirs.bn.keys["running_mean"]]
            state[ours.bn.keys["running_mean"]] = mean - bias.to(mean.dtype)
    return state


def folded_biases(match_: Match) -> int:
    """How many convolution biases :func:`mapped_state_dict` folds into the BN after them."""
    return sum(1 for theirs, ours in match_.pairs if theirs.folds_bias and not ours.layer.bias)


def weights_problem(state: Mapping[str, torch.Tensor]) -> str | None:
    """Why these weights cannot give a measurement (NaN/inf values, a negative BN running
    variance), naming the tensor; None if there is no such problem."""
    for key, value in state.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            return (
                f"tensor {key!r} holds {int(bad.sum())} NaN or infinite values of "
                f"{value.numel()}: its logits would be NaN, which is no measurement"
            )
        if key.endswith("running_var") and bool((value < 0).any()):
            return (
                f"BatchNorm {key!r} has {int((value < 0).sum())} negative running variances "
                f"(min {float(value.min()):.3g}): a variance is >= 0, so the file is damaged"
            )
    return None
