"""Fig. 6-style training curves (He et al. 2016, Fig. 6): error % vs iterations, one panel per
family (plain left, ResNet right), training error dashed, test error bold."""

from __future__ import annotations

import math
from pathlib import Path

from repro.fileio import atomic_write
from repro.store import Run


def mean_curve(runs: list[Run], key: str) -> tuple[list[int], list[float]]:
    """The metric averaged over seeds at the iterations every seed evaluated."""
    per_seed = [
        {
            r["iteration"]: r[key]
            for r in run.metrics
            if isinstance(r.get(key), (int, float)) and isinstance(r.get("iteration"), int)
        }
        for run in runs
    ]
    if not per_seed:
        return [], []
    common = sorted(set.intersection(*(set(d) for d in per_seed)))
    ys = [sum(d[it] for d in per_seed) / len(per_seed) for it in common]
    return common, ys


def family(model: str) -> str:
    """'plain' or 'resnet' (the two panels of Fig. 6 this project reproduces)."""
    return "plain" if model.startswith("plain") else "resnet"


def plot_curves(runs: dict[str, list[Run]], path: Path, title: str) -> Path:
    """Write the Fig. 6-style PNG for ``{model: [seed runs]}``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [f for f in ("plain", "resnet") if any(family(m) == f for m in runs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for ax, fam in zip(axes[0], panels):
        models = [m for m in runs if family(m) == fam]
        for i, model in enumerate(models):
            color = colors[i % len(colors)]
            x, y = mean_curve(runs[model], "train_error")
            mark = "o" if len(x) <= 40 else None  # a short run is a few points: show them
            ax.plot(x, y, "--", color=color, linewidth=1.0, marker=mark, markersize=3)
            x2, y2 = mean_curve(runs[model], "test_error")
            ax.plot(x2, y2, "-", color=color, linewidth=2.2, label=model, marker=mark)
            top = max([top, *[v for v in y + y2 if math.isfinite(v)]])
        ax.set_title(f"{'plain' if fam == 'plain' else 'ResNet'} nets")
        ax.set_xlabel("iterations")
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: train, bold: test", fontsize=8, title_fontsize=8)
    for ax in axes[0]:
        ax.set_ylim(0, min(100.0, max(20.0, top * 1.05)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # through a temp file: a full disk leaves the old PNG (or none), never a 0-byte one
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path
