"""Analyses of trained models; ``layer-response``: the layer response stds of Fig. 7 (Sec. 4.2).

``repro analyze layer-response RUNS...`` takes a reproduction folder (``<model>/seed<k>/final.pt``),
a single run folder (``final.pt``) or checkpoint files, and writes ``layer_response.json`` and
``layer_response.png`` (Fig. 7: stds in layer order and sorted by magnitude).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.analysis.layer_response import LayerResponse, layer_response_std, mean_response_std
from repro.data import CIFAR10_MEAN, CIFAR10_STD, SPLITS, get_split, load_cifar10
from repro.data.cifar10 import resolve_data_root
from repro.errors import ReproError
from repro.models import CifarResNet
from repro.train.checkpoint import load_checkpoint, model_from_checkpoint

JSON_NAME = "layer_response.json"
PNG_NAME = "layer_response.png"
DEFINITION = (
    "population std over all elements (images, channels, positions) of each 3x3 layer's response, "
    "after BN and before ReLU/addition (He et al. 2016, Sec. 4.2, Fig. 7), eval mode"
)
SEED_DIR = re.compile(r"^seed(\d+)$")


def warn(message: str) -> None:
    print(f"repro analyze: warning: {message}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    p = sub.add_parser(
        "layer-response",
        help="std of each 3x3 layer's response (Fig. 7)",
        description="Std of each 3x3 layer's response after BN (He et al. 2016, Fig. 7).",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a reproduction folder (<model>/seed<k>/final.pt), a run folder, or checkpoint files",
    )
    p.add_argument("--out", type=Path, help="output folder (default: the one folder given)")
    p.add_argument(
        "--data-root", help="CIFAR-10 folder (default: the runs' data_root, $REPRO_DATA)"
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="images to use (default test)")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1...")
    p.add_argument("--log-y", action="store_true", help="logarithmic std axis in the figure")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")  # fmt: skip
    p.set_defaults(_analysis=run_layer_response)


def run(args: argparse.Namespace) -> int:
    return int(args._analysis(args) or 0)


# --- inputs ------------------------------------------------------------------------------------


def run_checkpoint(run_dir: Path) -> Path | None:
    """A finished run's ``final.pt``; ``last.pt`` with a warning if it did not finish; else None."""
    final, last = run_dir / "final.pt", run_dir / "last.pt"
    if final.is_file():
        return final
    if last.is_file():
        warn(f"{run_dir}: no final.pt (the run did not finish); using last.pt")
        return last
    return None


def find_checkpoints(path: Path) -> list[Path]:
    """The checkpoints one command-line path stands for (see the module docstring)."""
    if not path.exists():
        raise ReproError(f"{path} does not exist; pass a run folder or a checkpoint file")
    if path.is_file():
        return [path]
    single = run_checkpoint(path)
    if single is not None:
        return [single]
    found = []
    for seed_dir in sorted(path.glob("*/seed*")):
        if not (seed_dir.is_dir() and SEED_DIR.match(seed_dir.name)):
            continue
        ckpt = run_checkpoint(seed_dir)
        if ckpt is None:
            warn(f"{seed_dir}: no final.pt or last.pt; skipped")
        else:
            found.append(ckpt)
    if not found:
        raise ReproError(
            f"{path} is neither a checkpoint, a run folder (with final.pt or last.pt) nor a "
            "reproduction folder (with <model>/seed<k>/final.pt); pass one of those"
        )
    return found


@dataclass
class Entry:
    """One analysed checkpoint."""

    key: str  # model label, e.g. "resnet20"
    seed: str  # e.g. "seed0"
    path: Path
    depth: int | None
    residual: bool
    result: LayerResponse
    iteration: int | None


def seed_label(state: dict, path: Path) -> str:
    seed = (state.get("config") or {}).get("seed")
    if seed is None:
        match = SEED_DIR.match(path.parent.name)
        seed = match.group(1) if match else None
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ReproError(f"--device {name!r} is not a device; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReproError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def default_out(paths: list[Path]) -> Path:
    if len(paths) != 1:
        raise ReproError(
            f"{len(paths)} inputs given: say where to write the results with --out DIR"
        )
    return paths[0] if paths[0].is_dir() else paths[0].parent


# --- outputs -----------------------------------------------------------------------------------


def summarise(entries: list[Entry], meta: dict) -> dict:
    """The JSON document: per model and seed, per-layer and per-channel stds; per model means."""
    models: dict[str, dict] = {}
    for e in sorted(entries, key=lambda e: (e.residual, e.depth or 0, e.key, e.seed)):
        m = models.setdefault(e.key, {
            "label": curve_label(e.key, e.depth, e.residual),
            "depth": e.depth,
            "residual": e.residual,
            "num_layers": len(e.result.std),
            "layer_names": e.result.names,
            "seeds": {},
        })  # fmt: skip
        if e.result.names != m["layer_names"]:
            raise ReproError(f"{e.path}: {e.key} checkpoints with different layers were given")
        m["seeds"][e.seed] = {
            "checkpoint": str(e.path),
            "iteration": e.iteration,
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


def write_atomic(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a temp file beside ``path``, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_mean_response_stds(path: str | os.PathLike) -> dict[str, float]:
    """{model: mean response std over layers and seeds} from a ``layer_response.json``."""
    doc = json.loads(Path(path).read_text())
    return {name: float(m["mean_std"]) for name, m in doc["models"].items()}


# --- command -----------------------------------------------------------------------------------


def run_layer_response(args: argparse.Namespace) -> int:
    from repro.analysis.plot import ResponseCurve, plot_layer_response  # matplotlib: only here

    if args.batch_size < 1:
        raise ReproError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = [Path(p) for p in args.paths]
    out = args.out if args.out is not None else default_out(paths)
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} is a file, not a folder")
    device = resolve_device(args.device)
    ckpts = [c for p in paths for c in find_checkpoints(p)]
    states = [(c, load_checkpoint(c, map_location="cpu")) for c in ckpts]

    jobs = []
    seen: dict[tuple[str, str], Path] = {}
    for path, state in states:  # check every input before the (slow) forward passes
        model, _ = model_from_checkpoint(state)
        if not hasattr(model, "response_layers"):
            raise ReproError(
                f"{path}: {state['model_name']} has no response_layers(); layer responses are "
                "defined for the plain and residual CIFAR nets of Sec. 4.2"
            )
        key, depth, residual = model_label(model, state["model_name"])
        seed = seed_label(state, path)
        if (key, seed) in seen:
            raise ReproError(
                f"two checkpoints of {key} {seed} given ({seen[key, seed]} and {path}); "
                "pass one per model and seed"
            )
        seen[key, seed] = path
        config = state.get("config") or {}
        if "mean" not in config or "std" not in config:
            warn(f"{path}: no mean/std in the checkpoint config; normalising with CIFAR-10's")
        jobs.append((path, state, model, key, seed, depth, residual, config))

    root = args.data_root
    if root is None:
        roots = {(s.get("config") or {}).get("data_root") for _, s in states} - {None}
        if len(roots) == 1 and Path(next(iter(roots))).exists():
            root = next(iter(roots))
    data = load_cifar10(resolve_data_root(root))
    images, _ = get_split(data, args.split)
    print(f"{args.split}: {images.shape[0]} images from {data.root}")

    entries: list[Entry] = []
    for path, state, model, key, seed, depth, residual, config in jobs:
        result = layer_response_std(
            model.to(device),
            images,
            args.batch_size,
            mean=config.get("mean", CIFAR10_MEAN),
            std=config.get("std", CIFAR10_STD),
        )
        model.cpu()
        entries.append(Entry(key, seed, path, depth, residual, result, state.get("iteration")))
        print(f"{key} {seed}: mean response std {result.mean_std:.4f} over "
              f"{len(result.std)} layers ({path})")  # fmt: skip

    meta = {
        "split": args.split,
        "num_images": int(images.shape[0]),
        "data_root": str(data.root),
        "data_official": data.official,
        "device": str(device),
    }
    doc = summarise(entries, meta)
    curves = [
        ResponseCurve(m["label"], m["depth"], m["residual"], m["std"])
        for m in doc["models"].values()
    ]
    out.mkdir(parents=True, exist_ok=True)
    title = f"Std of layer responses, CIFAR-10 {args.split}" + (
        "" if data.official else " (subset)"
    )
    title += " (He et al. 2016, Fig. 7)"
    write_atomic(out / PNG_NAME, lambda p: plot_layer_response(curves, p, title, args.log_y))
    write_atomic(out / JSON_NAME, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
    for name, m in doc["models"].items():
        print(f"{name}: mean response std {m['mean_std']:.4f} ({m['num_seeds']} seed(s))")
    print(f"wrote {out / JSON_NAME} and {out / PNG_NAME}")
    return 0
