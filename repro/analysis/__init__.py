"""Analyses of trained models: layer response stds (He et al. 2016, Sec. 4.2, Fig. 7)."""

from repro.analysis.layer_response import (
    LayerResponse,
    RunningMoments,
    layer_response_std,
    mean_response_std,
    response_modules,
)

__all__ = [
    "LayerResponse",
    "RunningMoments",
    "layer_response_std",
    "mean_response_std",
    "response_modules",
]
