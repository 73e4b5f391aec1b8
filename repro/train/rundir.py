"""The run directory: checks made before any training (writable, same config, sound checkpoints)
and the decision to start, resume or report an already finished run."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.train.checkpoint import load_checkpoint
from repro.train.recipes import RECIPE_FIELDS

CONFIG, METRICS, LAST, BEST, FINAL = (
    "config.json",
    "metrics.jsonl",
    "last.pt",
    "best.pt",
    "final.pt",
)

# The config fields that define *what* is trained; the rest (device, amp, threads, max_steps...)
# may change when a run is resumed.
TRAINING_FIELDS: tuple[str, ...] = (
    "model",
    "model_kwargs",
    "recipe",
    *(f for f in RECIPE_FIELDS if f not in ("name", "source")),
    "total_iterations",
    "seed",
    "split_seed",
    "eval_every",
    "mean",
    "std",
    "data_official",
    "data_counts",
    "sync_bn",
)


@dataclass
class RunState:
    """What the run directory holds: a checkpoint to resume from, and whether it is finished."""

    checkpoint: dict[str, Any] | None = None
    complete: bool = False
    extend_final: bool = False  # final.pt of a --max-steps run that this run continues


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for every training-relevant field that differs."""
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 - tuples vs lists, int vs float keys
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in TRAINING_FIELDS
        if norm(old.get(k)) != norm(new.get(k))
    ]


def read_config(out: Path) -> dict[str, Any]:
    path = out / CONFIG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReproError(f"{path} cannot be read ({exc}); use a new --out folder") from None
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ReproError(f"{path} is not a resnet-repro run config; use a new --out folder")
    return cfg


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and prove a file can be written there; ReproError otherwise."""
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReproError(
            f"cannot write to --out {out} ({exc.strerror or exc}); choose a writable folder"
        ) from None


def _check_checkpoint(ckpt: dict[str, Any], path: Path, config: dict[str, Any]) -> None:
    if ckpt["model_name"] != config["model"] or ckpt["model_kwargs"] != config["model_kwargs"]:
        raise ReproError(
            f"{path} holds a checkpoint of {ckpt['model_name']} {ckpt['model_kwargs']}, but this "
            f"run trains {config['model']} {config['model_kwargs']}; use a new --out folder"
        )
    for key in ("config", "iteration", "optimizer", "loader", "rng", "metrics_state"):
        if key not in ckpt:
            raise ReproError(f"{path} is not a training checkpoint (no {key!r}); cannot resume")
    diffs = config_differences(ckpt["config"], config)
    if diffs:
        raise ReproError(f"{path} was written by a different run ({'; '.join(diffs[:4])})")


def inspect_run_dir(out: Path, config: dict[str, Any], target: int, resume: bool) -> RunState:
    """Validate ``out`` against ``config`` (read only) and say how to proceed.

    ``target`` is the last iteration this invocation would train to. Every problem (another
    run's config, a truncated checkpoint, one of another model) is one ReproError.
    """
    has = {name: (out / name).exists() for name in (CONFIG, METRICS, LAST, BEST, FINAL)}
    if not has[CONFIG]:
        if any(has.values()):
            raise ReproError(
                f"--out {out} holds run files but no {CONFIG}; it is not a complete run folder: "
                "use a new --out folder"
            )
        if resume:
            raise ReproError(f"nothing to resume: --out {out} holds no run ({CONFIG} missing)")
        return RunState()
    diffs = config_differences(read_config(out), config)
    if diffs:
        raise ReproError(
            f"--out {out} holds a run with a different config ({'; '.join(diffs[:4])}"
            f"{'; ...' if len(diffs) > 4 else ''}); use a new --out folder or the same settings"
        )
    state = RunState()
    if has[FINAL]:
        final = load_checkpoint(out / FINAL)
        _check_checkpoint(final, out / FINAL, config)
        if (
            final.get("stop_reason") in ("schedule", "early_stopping")
            or final["iteration"] >= target
        ):
            return RunState(checkpoint=final, complete=True)
        state.extend_final = True
    if has[LAST]:
        state.checkpoint = load_checkpoint(out / LAST)
        _check_checkpoint(state.checkpoint, out / LAST, config)
    return state
