"""The Fig. 7-style figure: layer response stds in network order (top) and sorted (bottom)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEPTH_COLOURS = {
    20: "tab:orange",
    32: "tab:purple",
    44: "tab:brown",
    56: "tab:blue",
    110: "tab:green",
    1202: "tab:gray",
}
EXTRA_COLOURS = ("tab:red", "tab:pink", "tab:olive", "tab:cyan")


@dataclass
class ResponseCurve:
    """One line of Fig. 7: a model's per-layer stds (mean over seeds)."""

    label: str  # e.g. "plain-20", "ResNet-56"
    depth: int | None
    residual: bool
    std: Sequence[float]


def depth_colour(depth: int | None, others: dict[int | None, str]) -> str:
    """The same colour for a depth across plain and residual nets (Fig. 7 pairs them by depth)."""
    if depth in DEPTH_COLOURS:
        return DEPTH_COLOURS[depth]
    if depth not in others:
        others[depth] = EXTRA_COLOURS[len(others) % len(EXTRA_COLOURS)]
    return others[depth]


def plot_layer_response(
    curves: Sequence[ResponseCurve],
    path: str | os.PathLike,
    title: str | None = None,
    log_y: bool = False,
) -> None:
    """Write a two-panel PNG: stds in layer order (top) and sorted by magnitude (bottom)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.0), sharex=True)
    others: dict[int | None, str] = {}
    order = sorted(curves, key=lambda c: (c.residual, c.depth or 0, c.label))
    for c in order:
        colour = depth_colour(c.depth, others)
        style = "-" if c.residual else "--"
        xs = range(1, len(c.std) + 1)
        top.plot(xs, list(c.std), style, color=colour, linewidth=1.4, label=c.label)
        bottom.plot(
            xs, sorted(c.std, reverse=True), style, color=colour, linewidth=1.4, label=c.label
        )
    top.set_title("original layer order", fontsize=10)
    bottom.set_title("sorted by magnitude", fontsize=10)
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.set_xlim(left=1)
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    bottom.set_xlabel("layer index")
    top.legend(fontsize=8, ncol=2)
    fig.suptitle(title or "Standard deviations of layer responses (He et al. 2016, Fig. 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
