"""Write synthetic `repro reproduce` run directories following the run-directory contract."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from repro.experiments import EXPERIMENTS, get_preset
from repro.store import file_digest

# Final (train, test) error % of a faithful 200-epoch run (test: the seed report's epoch-200).
FAITHFUL: dict[str, tuple[float, float]] = {
    "plain20": (2.0, 8.84),
    "plain32": (3.0, 9.5),
    "plain44": (4.5, 10.9),
    "plain56": (6.0, 12.77),
    "plain110": (20.0, 25.0),
    "resnet20": (2.5, 8.74),
    "resnet32": (1.5, 7.6),
    "resnet44": (0.9, 7.2),
    "resnet56": (0.5, 6.57),
    "resnet110": (0.2, 6.4),
    "resnet1202": (0.1, 7.9),
}
EVALS = 20
EVAL_EVERY = 50


def milestone_iterations(config: dict[str, Any], total: int) -> list[int]:
    """The recipe's milestones in iterations, for a synthetic schedule of ``total`` iterations."""
    if config["milestone_unit"] == "epoch":
        return [m * total // config["epochs"] for m in config["milestones"]]
    return list(config["milestones"])


def scheduled_lr(config: dict[str, Any], iteration: int) -> float:
    """The lr of step ``iteration - 1``, as a real run records it at that evaluation."""
    drops = sum(1 for m in config["milestone_iterations"] if iteration - 1 >= m)
    return config["lr"] * config["gamma"] ** drops


def write_seed_run(
    path: Path,
    model: str,
    seed: int,
    preset: str,
    final_train: float,
    final_test: float,
    official: bool = True,
    evals: int = EVALS,
) -> None:
    """One `<model>/seed<k>` folder: config.json, metrics.jsonl (decaying curves), final.pt."""
    p = get_preset(preset)
    path.mkdir(parents=True, exist_ok=True)
    total = p.max_steps if p.max_steps else evals * EVAL_EVERY
    every = 1 if p.max_steps else EVAL_EVERY
    n = total // every
    config: dict[str, Any] = {
        **p.expected_config(),
        "model": model,
        "model_kwargs": {},
        "seed": seed,
        "total_iterations": total,
        "eval_every": every,
        "data_official": official,
        "data_counts": {"train": 50000, "val": 0, "test": 10000},
        "data_root": "/nowhere",
        "environment": {"python": "3.x", "torch": "synthetic"},
    }
    config["milestone_iterations"] = milestone_iterations(config, total)
    (path / "config.json").write_text(json.dumps(config))
    rows = []
    for i in range(1, n + 1):
        t = i / n
        decay = math.exp(-5 * t)
        wiggle = 0.05 * math.sin(7 * i + seed)
        row = {
            "epoch": t * 200,
            "iteration": i * every,
            "lr": scheduled_lr(config, i * every),
            "train_loss": 1.0,
            "train_error": final_train + (90 - final_train) * decay + wiggle,
            "val_loss": None,
            "val_error": None,
            "test_loss": 1.0,
            "test_error": final_test + (90 - final_test) * decay + wiggle,
            "seconds": float(i),
            "images_per_s": 1000.0,
        }
        if config["val_fraction"] > 0:
            row["val_loss"], row["val_error"] = 1.0, row["test_error"] + 0.3
        rows.append(row)
    rows[-1]["train_error"], rows[-1]["test_error"] = final_train, final_test
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "final.pt").write_text("synthetic marker")


def write_run(
    root: Path,
    experiment: str = "core",
    preset: str = "common",
    seeds: int = 1,
    finals: dict[str, list[tuple[float, float]]] | None = None,
    **kw: Any,
) -> Path:
    """A whole run directory; ``finals`` overrides {model: [(train, test) per seed]}."""
    finals = finals or {}
    for model in EXPERIMENTS[experiment]:
        for s in range(seeds):
            train, test = finals.get(model, [FAITHFUL[model]] * seeds)[s]
            write_seed_run(root / model / f"seed{s}", model, s, preset, train, test, **kw)
    summary = {
        "experiment": experiment,
        "preset": preset,
        "seeds": list(range(seeds)),
        "models": {m: {} for m in EXPERIMENTS[experiment]},
        "data_official": kw.get("official", True),
    }
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def edit_metrics(path: Path, fn) -> None:
    """Rewrite a metrics.jsonl through ``fn(rows) -> rows``."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in fn(rows)))


# Mean response std per model (Fig. 7: ResNets below their plain counterparts, deeper below shallower)
FAITHFUL_RESPONSES = {"plain20": 1.2, "plain56": 1.1, "resnet20": 0.8, "resnet56": 0.6}


def write_layer_response(root: Path, seeds: int = 1, means: dict[str, list[float]] | None = None):
    """A minimal ``layer_response.json`` as `repro analyze layer-response` writes it."""
    means = means or {m: [v] * seeds for m, v in FAITHFUL_RESPONSES.items()}

    def entry(model: str, seed: int, value: float) -> dict:
        final = root / model / f"seed{seed}" / "final.pt"  # the checkpoint it was computed from
        return {
            "mean_std": value,
            **({"checkpoint_sha256": file_digest(final)} if final.is_file() else {}),
        }

    models = {
        m: {
            "seeds": {f"seed{s}": entry(m, s, v) for s, v in enumerate(per_seed)},
            "mean_std": sum(per_seed) / len(per_seed),
        }
        for m, per_seed in means.items()
    }
    (root / "layer_response.json").write_text(json.dumps({"models": models}))
    return root
