"""Parameter and multiply-add counts, the two complexity measures of Tables 1 and 6, and their
comparison with the figures the paper prints (`repro params`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.baselines import load_baseline
from repro.errors import ReproError
from repro.models import CIFAR_DEPTHS, IMAGENET_DEPTHS, PLAIN_CIFAR_DEPTHS, build_model


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN affine included, running statistics not), as in Table 6."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, image_size: int) -> int:
    """Forward multiply-adds for one image (torch's FLOP counter counts 2 per multiply-add).

    Like the paper, only convolutions and fully-connected layers count (BN, ReLU, pooling and
    the shortcut additions are negligible and not counted).
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


MACS_TOLERANCE = 0.03  # Table 1 prints FLOPs to two significant figures

PARAMS_MODELS = (
    [f"resnet{d}" for d in CIFAR_DEPTHS]
    + [f"plain{d}" for d in PLAIN_CIFAR_DEPTHS]
    + [f"resnet{d}" for d in IMAGENET_DEPTHS]
    + ["plain18", "plain34", "resnet18_cifar"]
)
IMAGENET_MODELS = {f"resnet{d}" for d in IMAGENET_DEPTHS} | {"plain18", "plain34"}


@dataclass
class Complexity:
    model: str
    params: int
    paper_params: float | None  # in millions, as printed in the paper
    macs: int
    paper_macs: float | None
    params_match: bool | None
    macs_match: bool | None


def params_agree(params: int, paper_millions: float) -> bool:
    """True if ``params`` rounds to the paper's figure at the precision it was printed with."""
    decimals = len(repr(float(paper_millions)).split(".")[1])
    return abs(params / 1e6 - paper_millions) <= 0.5 * 10**-decimals + 1e-12


def paper_figures() -> dict[str, dict]:
    """Paper figures by model name; a plain CIFAR net has exactly its ResNet's parameters."""
    figures = dict(load_baseline("he2016_table6")["models"])
    figures |= {f"plain{d}": figures[f"resnet{d}"] for d in PLAIN_CIFAR_DEPTHS}
    figures |= load_baseline("he2016_table1")["models"]
    return figures


def complexity(name: str, figures: dict[str, dict]) -> Complexity:
    model = build_model(name)
    params = count_params(model)
    macs = count_macs(model, 224 if name in IMAGENET_MODELS else 32)
    paper = figures.get(name, {})
    paper_params, paper_macs = paper.get("params_m"), paper.get("macs")
    return Complexity(
        model=name,
        params=params,
        paper_params=paper_params,
        macs=macs,
        paper_macs=paper_macs,
        params_match=None if paper_params is None else params_agree(params, paper_params),
        macs_match=None if paper_macs is None else abs(macs / paper_macs - 1) <= MACS_TOLERANCE,
    )


@dataclass(frozen=True)
class ParamsClaim:
    """One parameter claim of Table 6's text (he2016_table6.json ``claims``): ``model``'s exact
    count below every named method's printed count."""

    claim: str
    model: str
    params: int
    others: tuple[tuple[str, float], ...]  # (label, millions as printed)
    holds: bool


def _table6_claims(doc: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, float]]]]:
    """(id, model, [(label, params_m)]) of every parameter claim; one ReproError if malformed."""
    methods: Any = doc.get("other_methods")
    claims: Any = doc.get("claims") if isinstance(doc.get("claims"), list) else [None]
    out = []
    try:
        for c in claims:
            others = []
            for key in c["fewer_params_than"]:
                m = methods[key]
                label = f"{m['label']} ({m['layers']} layers)" if "layers" in m else m["label"]
                others.append((str(label), float(m["params_m"])))
            out.append((str(c["id"]), str(c["model"]), others))
    except (KeyError, TypeError, ValueError):
        raise ReproError(
            "baselines/he2016_table6.json: its 'claims' need an id, a model and "
            "'fewer_params_than' naming 'other_methods' with params_m; restore the file from "
            "the repository (git checkout baselines/)"
        ) from None
    return out


def params_claims(doc: dict[str, Any] | None = None) -> list[ParamsClaim]:
    """Table 6's parameter claims checked on our nets' exact counts: "[ResNet-110] has fewer
    parameters than other deep and thin networks such as FitNet and Highway" (Sec. 4.2)."""
    doc = doc if doc is not None else load_baseline("he2016_table6")
    out = []
    for claim, model, others in _table6_claims(doc):
        params = count_params(build_model(model))
        holds = all(params < millions * 1e6 for _, millions in others)
        out.append(ParamsClaim(claim, model, params, tuple(others), holds))
    return out
