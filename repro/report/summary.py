"""Read a reproduction run directory (``<root>/<model>/seed<k>/``) and summarise it.

Headline metric: the final-evaluation test error. Best-on-test is kept only as a labelled
secondary number (it is selected on the test set); with a validation split (the paper's 45k/5k,
Sec. 4.2) the test error of the evaluation with the lowest validation error is reported too.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError

SUMMARY_FILE = "summary.json"
SEED_DIR = re.compile(r"^seed(\d+)$")
METRIC_KEYS = (
    "final_test_error",
    "final_train_error",
    "last10_train_error",
    "best_test_error",
    "val_selected_test_error",
)


@dataclass
class SeedRun:
    """One trained model/seed: its config.json, metrics.jsonl rows and whether final.pt exists."""

    path: Path
    config: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    finished: bool
    problems: list[str] = field(default_factory=list)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ReproError naming the file otherwise."""
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReproError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ReproError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ReproError(f"{path} does not hold a JSON object")
    return obj


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a metrics.jsonl and a list of problems (unreadable lines are problems)."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    if not path.is_file():
        return rows, [f"{path.name} is missing"]
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name} line {number} is not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path.name} line {number} is not an object")
            continue
        rows.append(row)
    return rows, problems


def load_seed_run(path: Path) -> SeedRun:
    """Read one ``<model>/seed<k>`` folder without raising: problems are collected instead."""
    problems: list[str] = []
    config = None
    if (path / "config.json").is_file():
        try:
            config = read_json(path / "config.json")
        except ReproError as exc:
            problems.append(str(exc))
    else:
        problems.append("config.json is missing")
    metrics, metric_problems = read_metrics(path / "metrics.jsonl")
    return SeedRun(path, config, metrics, (path / "final.pt").is_file(), problems + metric_problems)


def find_seed_runs(root: Path) -> dict[str, dict[int, Path]]:
    """Every ``<model>/seed<k>`` folder under a run directory: {model: {seed: path}}."""
    found: dict[str, dict[int, Path]] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for seed_dir in model_dir.iterdir():
            m = SEED_DIR.match(seed_dir.name)
            if m and seed_dir.is_dir():
                found.setdefault(model_dir.name, {})[int(m.group(1))] = seed_dir
    return found


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def expected_end(config: dict[str, Any]) -> int | None:
    """The iteration the schedule ends at: ``total_iterations``, cut by ``max_steps`` if set."""
    total = config.get("total_iterations")
    cut = config.get("max_steps")
    if total is None:
        return cut
    return min(int(total), int(cut)) if cut else int(total)


def seed_metrics(run: SeedRun) -> dict[str, float | None]:
    """Final/last-10%/best/val-selected errors of one run (None where it cannot be computed)."""
    out: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    rows = [r for r in run.metrics if _finite(r.get("iteration"))]
    if not rows:
        return out
    last = rows[-1]
    out["final_test_error"] = last.get("test_error")
    out["final_train_error"] = last.get("train_error")
    tests = [r["test_error"] for r in rows if _finite(r.get("test_error"))]
    out["best_test_error"] = min(tests) if tests else None
    end = (expected_end(run.config) if run.config else None) or last["iteration"]
    # Last 10% of the schedule: each evaluation's train_error covers the iterations since the
    # previous one, so weight it by that span.
    start = 0.9 * end
    total_w = acc = 0.0
    prev = 0
    for r in rows:
        it = r["iteration"]
        w = it - max(prev, start)
        prev = it
        if w > 0 and _finite(r.get("train_error")):
            total_w += w
            acc += w * r["train_error"]
    out["last10_train_error"] = acc / total_w if total_w > 0 else last.get("train_error")
    vals = [r for r in rows if _finite(r.get("val_error"))]
    if vals:
        best_val = min(vals, key=lambda r: r["val_error"])
        out["val_selected_test_error"] = best_val.get("test_error")
    return out


def mean_std(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (None for fewer than two values) over the finite values."""
    xs = [float(v) for v in values if _finite(v)]
    return {
        "mean": statistics.fmean(xs) if xs else None,
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def summarize_model(runs: dict[int, SeedRun]) -> dict[str, Any]:
    """Per-seed values and mean/std of every metric for one model."""
    per_seed = {}
    for seed, run in sorted(runs.items()):
        last = run.metrics[-1] if run.metrics else {}
        per_seed[str(seed)] = {
            "finished": run.finished,
            "iteration": last.get("iteration"),
            "total_iterations": expected_end(run.config) if run.config else None,
            "seconds": last.get("seconds"),
            "problems": run.problems,
            **seed_metrics(run),
        }
    stats = {k: mean_std([s[k] for s in per_seed.values()]) for k in METRIC_KEYS}
    return {"seeds": per_seed, **stats}


def build_summary(
    root: Path,
    experiment: str,
    preset: str,
    models: list[str] | tuple[str, ...],
    seeds: list[int] | range,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary.json dict of a run directory (read fresh from the seed folders)."""
    runs = {m: {s: load_seed_run(root / m / f"seed{s}") for s in seeds} for m in models}
    configs = [r.config for m in runs.values() for r in m.values() if r.config]
    first = configs[0] if configs else {}
    summary: dict[str, Any] = {
        "experiment": experiment,
        "preset": preset,
        "seeds": list(seeds),
        "models": {m: summarize_model(r) for m, r in runs.items()},
        "complete": all(r.finished for m in runs.values() for r in m.values()),
        "data_official": first.get("data_official"),
        "data_counts": first.get("data_counts"),
        "data_root": first.get("data_root"),
        "environment": first.get("environment"),
        "training_seconds": sum(
            float(r.metrics[-1].get("seconds") or 0.0)
            for m in runs.values()
            for r in m.values()
            if r.metrics
        ),
    }
    summary.update(extra or {})
    return summary


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_summary(root: Path) -> dict[str, Any]:
    """A run directory's summary.json, refreshed from the seed folders it names."""
    root = Path(root)
    if not root.is_dir():
        raise ReproError(f"run directory {root} does not exist")
    path = root / SUMMARY_FILE
    if not path.is_file():
        raise ReproError(
            f"{path} is missing: {root} is not a `repro reproduce` run directory "
            "(run `repro reproduce --experiment E --preset P --out DIR` first)"
        )
    old = read_json(path)
    for key in ("experiment", "preset", "seeds", "models"):
        if key not in old:
            raise ReproError(f"{path} has no {key!r}; it was not written by `repro reproduce`")
    keep = {k: v for k, v in old.items() if k not in ("models", "complete", "training_seconds")}
    return build_summary(root, old["experiment"], old["preset"], list(old["models"]),
                         old["seeds"], extra=keep)  # fmt: skip
