"""Stage 5: the pytest-benchmark benchmarks of ``tests/benchmarks`` (the GPU ones; in the
rehearsal one small CPU one), their JSON kept as benchmarks.json with this stage's record added.
At the time box pytest stops between benchmarks (``pytest_timebox``) and writes its JSON whole;
stopped inside one, the benchmarks that finished come from the plugin's record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scripts.gpu_check.common import (
    PYTEST_PLUGIN,
    Context,
    pytest_env,
    read_stage,
    run_child,
    stage_path,
    update_stage,
)


def bench_command(ctx: Context) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "tests/benchmarks",
        "--benchmark-only",
        *ctx.sizes.bench_args,
        "-q",
        *PYTEST_PLUGIN,
        f"--benchmark-json={stage_path(ctx.out, 'bench')}",
    ]


def figures(record: dict[str, Any]) -> list[dict[str, Any]]:
    """name, images/s, mean seconds per round of every benchmark in pytest-benchmark's JSON."""
    rows = []
    for b in record.get("benchmarks", []):
        info = b.get("extra_info", {})
        rows.append(
            {
                "name": b.get("name"),
                "images_per_s": info.get("images_per_s"),
                "mean_s": b.get("stats", {}).get("mean"),
                "peak_memory_gib": info.get("peak_memory_gib"),
                "speedup_over_classic": info.get("speedup_over_classic"),
            }
        )
    return rows


def finished(path: Path) -> list[dict[str, Any]]:
    """The benchmarks the time-box plugin recorded as they finished (one JSON line each)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_bench(ctx: Context) -> None:
    lines = ctx.work / "benchmarks.jsonl"
    lines.unlink(missing_ok=True)
    rc = run_child(bench_command(ctx), ctx.remaining(), pytest_env(ctx, lines))
    record = read_stage(ctx.out, "bench")  # pytest-benchmark's own JSON, when it wrote one
    if not record.get("benchmarks") and finished(lines):  # stopped hard inside a benchmark
        record = update_stage(ctx.out, "bench", benchmarks=finished(lines), from_plugin=True)
    # exit 2: the time-box plugin stopped it between benchmarks; None: SIGINT inside one
    cut = rc in (None, 2)
    update_stage(ctx.out, "bench", pytest_exit=rc, time_boxed=cut, figures=figures(record))
    if rc not in (0, None, 2):
        raise RuntimeError(f"pytest tests/benchmarks exited {rc}")
    if not record.get("benchmarks"):
        raise RuntimeError("no benchmark finished" + (" within the time box" if rc is None else ""))
