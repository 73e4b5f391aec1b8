"""Fig. 7 for trained checkpoints: the std of every 3x3 layer's response (He et al. 2016, Sec.
4.2), per model and seed, written as ``layer_response.json`` + ``.png`` into a run folder.

Inputs are a reproduction folder (``<model>/seed<k>/final.pt``), a single run folder
(``final.pt``; ``last.pt`` of an unfinished run, with a warning) or checkpoint files. Every input
is checked before the (slow) forward passes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.analysis.layer_response import LayerResponse, layer_response_std, mean_response_std
from repro.data import normalize
from repro.errors import ReproError
from repro.evaluate import InputNorm, checkpoint_normalization
from repro.fileio import atomic_write
from repro.models import CifarResNet
from repro.run_config import RunConfig, parse_run_config
from repro.store import (
    FINAL,
    LAYER_RESPONSE_JSON,
    LAYER_RESPONSE_PNG,
    file_digest,
    run_checkpoint,
    seed_of,
    write_layer_response,
)
from repro.train.checkpoint import load_checkpoint, model_from_checkpoint

DEFINITION = (
    "population std over all elements (images, channels, positions) of each 3x3 layer's response, "
    "after BN and before ReLU/addition (He et al. 2016, Sec. 4.2, Fig. 7), eval mode"
)


def warn(message: str) -> None:
    print(f"repro analyze: warning: {message}", file=sys.stderr)


def _checkpoint_of(run: Path) -> Path | None:
    ckpt = run_checkpoint(run)
    if ckpt is not None and ckpt.name != FINAL:
        warn(f"{run}: no {FINAL} (the run did not finish); using {ckpt.name}")
    return ckpt


def find_checkpoints(path: Path) -> list[Path]:
    """The checkpoints one command-line path stands for (see the module docstring)."""
    if not path.exists():
        raise ReproError(f"{path} does not exist; pass a run folder or a checkpoint file")
    if path.is_file():
        return [path]
    single = _checkpoint_of(path)
    if single is not None:
        return [single]
    found = []
    for run in sorted(path.glob("*/seed*")):
        if not (run.is_dir() and seed_of(run) is not None):
            continue
        ckpt = _checkpoint_of(run)
        if ckpt is None:
            warn(f"{run}: no final.pt or last.pt; skipped")
        else:
            found.append(ckpt)
    if not found:
        raise ReproError(
            f"{path} is neither a checkpoint, a run folder (with final.pt or last.pt) nor a "
            "reproduction folder (with <model>/seed<k>/final.pt); pass one of those"
        )
    return found


@dataclass
class Job:
    """One checkpoint to analyse, with the labels it is filed under."""

    path: Path
    model: torch.nn.Module
    key: str  # model label, e.g. "resnet20"
    seed: str  # e.g. "seed0"
    depth: int | None
    residual: bool
    config: RunConfig  # the checkpoint's copy of its run's config.json
    iteration: int | None
    digest: str  # SHA-256 of the checkpoint file: which weights the result belongs to
    norm: InputNorm  # the normalisation the run trained with (a mean image for per-pixel-mean)


@dataclass
class Entry:
    """One analysed checkpoint."""

    job: Job
    result: LayerResponse


def seed_label(config: RunConfig, path: Path) -> str:
    seed: int | None = config.seed
    if seed is None:
        seed = seed_of(path.parent)
    return f"seed{seed}" if seed is not None else path.stem


def model_label(model: torch.nn.Module, name: str) -> tuple[str, int | None, bool]:
    """(label, depth, residual): ``resnet20``/``plain56`` (+``-B``/``-C`` for other shortcuts)."""
    if isinstance(model, CifarResNet):
        label = f"{'resnet' if model.residual else 'plain'}{model.depth}"
        if model.residual and model.shortcut_option != "A":
            label += f"-{model.shortcut_option}"
        return label, model.depth, model.residual
    return name, getattr(model, "depth", None), bool(getattr(model, "residual", True))


def curve_label(key: str, depth: int | None, residual: bool) -> str:
    if depth is None:
        return key
    suffix = key.split("-", 1)[1] if "-" in key else ""
    base = f"ResNet-{depth}" if residual else f"plain-{depth}"
    return f"{base} ({suffix})" if suffix else base


def prepare_jobs(checkpoints: Sequence[Path]) -> list[Job]:
    """Load and check every checkpoint: a CIFAR net with response layers, one per model and seed."""
    jobs: list[Job] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in checkpoints:
        state = load_checkpoint(path, map_location="cpu")
        model, _ = model_from_checkpoint(state)
        if not hasattr(model, "response_layers"):
            raise ReproError(
                f"{path}: {state['model_name']} has no response_layers(); layer responses are "
                "defined for the plain and residual CIFAR nets of Sec. 4.2"
            )
        key, depth, residual = model_label(model, state["model_name"])
        config = parse_run_config(state.get("config") or {}, f"{path} 'config'")
        seed = seed_label(config, path)
        if (key, seed) in seen:
            raise ReproError(
                f"two checkpoints of {key} {seed} given ({seen[key, seed]} and "
                f"{path}); pass one per model and seed"
            )
        seen[key, seed] = path
        norm = checkpoint_normalization(state, str(path))
        if norm.name != "per-pixel-mean" and not (
            config.recorded("mean") and config.recorded("std")
        ):
            warn(f"{path}: no mean/std in the checkpoint config; normalising with CIFAR-10's")
        iteration = state.get("iteration")
        jobs.append(
            Job(path, model, key, seed, depth, residual, config, iteration, file_digest(path), norm)
        )
    return jobs


def recorded_data_root(jobs: Sequence[Job]) -> str | None:
    """The data root the checkpoints were trained on, when they agree and it still exists."""
    roots = {job.config.data_root for job in jobs if job.config.data_root is not None}
    if len(roots) == 1 and Path(next(iter(roots))).exists():
        return next(iter(roots))
    return None


def measure(
    jobs: Sequence[Job], images: torch.Tensor, device: torch.device, batch_size: int
) -> list[Entry]:
    """The layer responses of every job on ``images``, one model on the device at a time."""
    entries = []
    for job in jobs:
        norm = job.norm
        if isinstance(norm.mean, torch.Tensor):  # a mean image: normalised here, as in training
            result = layer_response_std(
                job.model.to(device), normalize(images, norm.mean, norm.std), batch_size
            )
        else:
            result = layer_response_std(
                job.model.to(device), images, batch_size, mean=norm.mean, std=norm.std
            )
        job.model.cpu()
        entries.append(Entry(job, result))
        print(
            f"{job.key} {job.seed}: mean response std {result.mean_std:.4f} over "
            f"{len(result.std)} layers ({job.path})"
        )
    return entries


def summarise(entries: list[Entry], meta: dict) -> dict:
    """The JSON document: per model and seed, per-layer and per-channel stds; per model means."""
    models: dict[str, dict] = {}
    for e in sorted(
        entries, key=lambda e: (e.job.residual, e.job.depth or 0, e.job.key, e.job.seed)
    ):
        job = e.job
        m = models.setdefault(
            job.key,
            {
                "label": curve_label(job.key, job.depth, job.residual),
                "depth": job.depth,
                "residual": job.residual,
                "num_layers": len(e.result.std),
                "layer_names": e.result.names,
                "seeds": {},
            },
        )
        if e.result.names != m["layer_names"]:
            raise ReproError(f"{job.path}: {job.key} checkpoints with different layers were given")
        m["seeds"][job.seed] = {
            "checkpoint": str(job.path),
            "checkpoint_sha256": job.digest,
            "iteration": job.iteration,
            "std": e.result.std,
            "sorted_std": e.result.sorted_std(),
            "channel_std": e.result.channel_std,
            "mean_std": e.result.mean_std,
        }
    for m in models.values():
        runs = list(m["seeds"].values())
        m["num_seeds"] = len(runs)
        m["std"] = [math.fsum(col) / len(runs) for col in zip(*(r["std"] for r in runs))]
        m["sorted_std"] = sorted(m["std"], reverse=True)
        m["mean_std"] = mean_response_std(m["std"])
        m["mean_std_per_seed"] = [r["mean_std"] for r in runs]
    return {**meta, "definition": DEFINITION, "models": models}


def write_figure_and_json(doc: dict, out: Path, title: str, log_y: bool) -> None:
    """``layer_response.png`` (matplotlib, imported only here) and ``layer_response.json``."""
    from repro.analysis.plot import ResponseCurve, plot_layer_response

    curves = [
        ResponseCurve(m["label"], m["depth"], m["residual"], m["std"])
        for m in doc["models"].values()
    ]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / LAYER_RESPONSE_PNG, lambda p: plot_layer_response(curves, p, title, log_y))
    write_layer_response(out, doc)
    print(f"wrote {out / LAYER_RESPONSE_JSON} and {out / LAYER_RESPONSE_PNG}")
