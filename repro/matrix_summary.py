"""Summarise a reproduction matrix: per run and per model, the numbers the report and the claims use.

Below the launchers, the claims and the report, which all read it; it launches nothing.

Headline metric: the final-evaluation test error. Best-on-test is kept only as a labelled
secondary number (it is selected on the test set); with a validation split (the paper's 45k/5k,
Sec. 4.2) the test error of the evaluation with the lowest validation error is reported too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from repro.store import Matrix, Run, expected_end

METRIC_KEYS = (
    "final_test_error",
    "final_train_error",
    "last10_train_error",
    "best_test_error",
    "val_selected_test_error",
)


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def seed_metrics(run: Run) -> dict[str, float | None]:
    """Final/last-10%/best/val-selected errors of one run (None where it cannot be computed)."""
    out: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    rows = [r for r in run.metrics if _finite(r.get("iteration"))]
    if not rows:
        return out
    last = rows[-1]
    out["final_test_error"] = last.get("test_error")
    out["final_train_error"] = last.get("train_error")
    # iteration 0 is the untrained net (e.g. Caffe's initial test): never a best-on-test result
    tests = [r["test_error"] for r in rows if _finite(r.get("test_error")) and r["iteration"] > 0]
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


def mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (None for fewer than two values) over the finite values."""
    xs = [float(v) for v in values if _finite(v)]
    return {
        "mean": statistics.fmean(xs) if xs else None,
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def summarize_model(runs: dict[int, Run]) -> dict[str, object]:
    """Per-seed values and mean/std of every metric for one model."""
    metrics = {seed: seed_metrics(run) for seed, run in sorted(runs.items())}
    per_seed: dict[str, dict[str, object]] = {}
    for seed, run in sorted(runs.items()):
        last = run.metrics[-1] if run.metrics else {}
        per_seed[str(seed)] = {
            "finished": run.finished,
            "iteration": last.get("iteration"),
            "total_iterations": run.run_config.expected_end() if run.run_config else None,
            "seconds": last.get("seconds"),
            "problems": run.problems,
            **metrics[seed],
        }
    stats = {k: mean_std([m[k] for m in metrics.values()]) for k in METRIC_KEYS}
    return {"seeds": per_seed, **stats}


def build_summary(
    experiment: str,
    preset: str,
    seeds: list[int] | range,
    runs: dict[str, dict[int, Run]],
    extra: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The summary.json dict of a matrix from its runs (:func:`repro.store.load_runs`)."""
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


def refreshed_summary(matrix: Matrix) -> dict[str, Any]:
    """A matrix's summary.json with every result recomputed from its run folders."""
    keep = {
        k: v
        for k, v in matrix.summary.items()
        if k not in ("models", "complete", "training_seconds")
    }
    return build_summary(matrix.experiment, matrix.preset, matrix.seeds, matrix.runs, extra=keep)
