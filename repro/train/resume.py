"""The decision to start, resume or leave a finished run: training's own, on top of the run store
(:mod:`repro.store`), which reads and writes the files this decision looks at.

A run folder with another run's config, a truncated or foreign checkpoint, or a lost history is
refused in one line before anything in it changes; a finished run stays finished unless the
schedule is extended (``--max-steps``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from repro.errors import ReproError
from repro.fileio import path_problem
from repro.recipes import RECIPE_FIELDS
from repro.run_config import CONFIG, RunConfig, parse_run_config, read_run_config
from repro.store import BEST, FINAL, LAST, METRICS, read_metrics
from repro.train.checkpoint import Checkpoint, load_checkpoint

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
    """What the run directory holds: a checkpoint to resume from, whether it is finished, and
    what the trainer should tell the user about it."""

    checkpoint: Checkpoint | None = None
    complete: bool = False
    extend_final: bool = False  # final.pt of a --max-steps run that this run continues
    notes: list[str] = field(default_factory=list)


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``field: old -> new`` for every training-relevant field that differs (a recipe field the
    old config predates counts as its legacy value, what that run did: RunConfig's default)."""
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 - tuples vs lists, int vs float keys
    return [
        f"{k}: {getattr(old, k)!r} -> {getattr(new, k)!r}"
        for k in TRAINING_FIELDS
        if norm(getattr(old, k)) != norm(getattr(new, k))
    ]


def recorded_config(out: Path) -> tuple[RunConfig | None, str | None]:
    """(the run's config, a note) from config.json, or, when that was lost, from the config every
    checkpoint holds; (None, None) for a folder with neither."""
    if (out / CONFIG).is_file():
        return read_run_config(out), None
    for name in (LAST, FINAL):
        if (out / name).is_file():
            config = load_checkpoint(out / name).get("config")
            if isinstance(config, dict) and "model" in config:
                note = f"{CONFIG} was missing: recovered the run's config from {name}"
                return parse_run_config(config, f"{out / name} 'config'"), note
    return None, None


def _training_checkpoint(path: Path, config: RunConfig) -> Checkpoint:
    """The checkpoint at ``path``, checked to be a training state of this run's model and
    config (ReproError otherwise)."""
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != config.model or ckpt["model_kwargs"] != config.model_kwargs:
        raise ReproError(
            f"{path} holds a checkpoint of {ckpt['model_name']} {ckpt['model_kwargs']}, but this "
            f"run trains {config.model} {config.model_kwargs}; use a new --out folder"
        )
    for key in ("config", "iteration", "optimizer", "loader", "rng", "metrics_state"):
        if key not in ckpt:
            raise ReproError(f"{path} is not a training checkpoint (no {key!r}); cannot resume")
    diffs = config_differences(parse_run_config(ckpt["config"], f"{path} 'config'"), config)
    if diffs:
        raise ReproError(f"{path} was written by a different run ({'; '.join(diffs[:4])})")
    return cast(Checkpoint, ckpt)  # its keys checked above, their contents by load_checkpoint


def _new_run(out: Path, resume: bool) -> RunState:
    """A folder without a run: a fresh start, unless it holds run files we cannot place."""
    leftovers = [n for n in (METRICS, BEST) if (out / n).exists()]
    if leftovers:
        raise ReproError(
            f"--out {out} holds {', '.join(leftovers)} but no {CONFIG} and no checkpoint; it is "
            "not a complete run folder: use a new --out folder"
        )
    if resume:
        raise ReproError(f"nothing to resume: --out {out} holds no run ({CONFIG} missing)")
    return RunState()


def _check_last_is_there(out: Path, recorded: RunConfig) -> None:
    """ReproError when last.pt is not a readable file although the run got past its first
    checkpoint: starting from iteration 0 would empty metrics.jsonl and delete best.pt. (A run
    killed before its first checkpoint has no last.pt and starts again; that stays so.)"""
    last = out / LAST
    problem = path_problem(last)
    if problem is None:
        return
    keep = "restore it, or start over in a new --out folder (nothing was changed)"
    if os.path.lexists(last):  # a dangling link, a loop, a folder, a FIFO ...
        raise ReproError(f"{last} {problem}: the run's training state cannot be read; {keep}")
    every = recorded.checkpoint_every or recorded.eval_every
    done = [r["iteration"] for r in read_metrics(out / METRICS) if _is_int(r.get("iteration"))]
    if _is_int(every) and done and max(done) > every:
        raise ReproError(
            f"{last} is missing, but {METRICS} records evaluations up to iteration {max(done)} "
            f"(a checkpoint is written every {every}): the run's training state was lost; {keep}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def inspect_run_dir(out: Path, config: RunConfig, target: int, resume: bool) -> RunState:
    """Validate ``out`` against ``config`` (read only) and say how to proceed.

    ``target`` is the last iteration this invocation would train to. Every problem (another
    run's config, a truncated checkpoint, one of another model, a lost history) is one
    ReproError; a finished run stays finished unless ``target`` goes past its end.
    """
    recorded, note = recorded_config(out)
    if recorded is None:
        return _new_run(out, resume)
    diffs = config_differences(recorded, config)
    if diffs:
        raise ReproError(
            f"--out {out} holds a run with a different config ({'; '.join(diffs[:4])}"
            f"{'; ...' if len(diffs) > 4 else ''}); use a new --out folder or the same settings"
        )
    state = RunState(notes=[note] if note else [])
    if (out / FINAL).is_file():
        final = _training_checkpoint(out / FINAL, config)
        if (
            final.get("stop_reason") in ("schedule", "early_stopping")
            or final["iteration"] >= target
        ):
            return RunState(checkpoint=final, complete=True, notes=state.notes)
        state.extend_final = True
        state.notes.append(
            f"extending the finished run from iteration {final['iteration']} to "
            f"{target} (final.pt is rewritten at the end)"
        )
    _check_last_is_there(out, recorded)
    if (out / LAST).is_file():
        state.checkpoint = _training_checkpoint(out / LAST, config)
        it = state.checkpoint["iteration"]
        if not (out / METRICS).is_file():
            raise ReproError(
                f"{out / METRICS} is missing while {LAST} is at iteration {it}: resuming would "
                "lose the run's evaluation history; restore the file, or start over in a new --out"
            )
        state.notes.append(f"resuming from {LAST} at iteration {it}")
    else:
        state.notes.append(
            f"no {LAST} yet (the run stopped before its first checkpoint): "
            "starting it from iteration 0"
        )
    return state
