"""``python -m scripts.gpu_check start|run STAGE|rungs NAME...|finish STAGE|check-limits OUT``:
the steps ``scripts/gpu-check.sh`` calls (see its ``--help``)."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from scripts.gpu_check.common import (
    LOG,
    STAGES,
    Context,
    forced_failure,
    read_stage,
    set_status,
    update_stage,
)
from scripts.gpu_check.limits import limit_problems, shrink_log
from scripts.gpu_check.summary import write_summary

TIMED_OUT = (124, 137)  # timeout's exit status after SIGINT, and after its SIGKILL


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu_check", description=__doc__)
    p.add_argument("command", choices=["start", "run", "rungs", "finish", "check-limits"])
    p.add_argument("names", nargs="*", help="the stage (run, finish), rungs, or OUT (check-limits)")
    p.add_argument("--out", type=Path)
    p.add_argument("--work", type=Path)
    p.add_argument("--data-root", default="")
    p.add_argument("--rehearse", action="store_true")
    p.add_argument("--budget", type=float, default=0.0)
    p.add_argument("--budgets", type=float, nargs="*", default=[])
    p.add_argument("--deadline", type=float, default=0.0, help="the stage's end, as time.time()")
    p.add_argument("--rc", type=int)
    p.add_argument("--milliseconds", type=int)
    return p.parse_args(argv)


def context(a: argparse.Namespace) -> Context:
    return Context(a.out, a.work, a.data_root or None, a.rehearse, a.deadline)


def child_args(a: argparse.Namespace) -> list[str]:
    """The options a stage passes on to its child processes."""
    out = ["--out", str(a.out), "--work", str(a.work), "--data-root", a.data_root]
    out += ["--budget", str(a.budget), "--deadline", str(a.deadline)]
    return out + (["--rehearse"] if a.rehearse else [])


def run_stage(a: argparse.Namespace) -> int:
    """Run one stage; an exception is recorded as the stage's error (exit 1), an interrupt (its
    time box) as such (exit 124)."""
    from scripts.gpu_check import bench, env, ladder, memory, training

    stage, ctx = a.names[0], context(a)
    set_status(ctx.out, stage, status="running", budget_s=a.budget)
    try:
        forced_failure(stage, a.budget)
        if stage == "env":
            env.stage_env(ctx)
        elif stage == "ladder":
            ladder.stage_ladder(ctx, child_args(a))
        elif stage == "memory":
            memory.stage_memory(ctx)
        elif stage == "training":
            training.stage_training(ctx)
        else:
            bench.stage_bench(ctx)
    except KeyboardInterrupt:
        set_status(ctx.out, stage, status="timed out", error="stopped at its time box")
        return 124
    except Exception as exc:
        traceback.print_exc()
        set_status(ctx.out, stage, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return 1
    return 0


def log_tail(out: Path, stage: str) -> str:
    """The last non-empty line the stage wrote to log.txt (for a crash that left no record)."""
    try:
        text = (out / LOG).read_text(errors="replace")
    except OSError:
        return ""
    section = text.rsplit(f" {stage} (budget", 1)[-1]
    lines = [ln.strip() for ln in section.splitlines()[1:] if ln.strip()]
    return lines[-1][:300] if lines else ""


def finish(a: argparse.Namespace) -> int:
    """Record the stage's end from the harness's view (exit status, wall time), rewrite
    summary.md, and print one line."""
    stage, out = a.names[0], a.out
    recorded = read_stage(out, stage).get("stage") or {}
    seconds = a.milliseconds / 1000
    if a.rc == 0:
        status, error = "ok", None
    elif a.rc in TIMED_OUT:
        status = "timed out"
        error = (
            f"overran its {a.budget:g} s budget ({recorded.get('error') or log_tail(out, stage)})"
        )
    else:
        status = "failed"
        error = recorded.get("error") or log_tail(out, stage) or f"exit status {a.rc}"
    set_status(
        out, stage, status=status, error=error, seconds=seconds, budget_s=a.budget, exit=a.rc
    )
    write_summary(out)
    print(
        f"stage {STAGES.index(stage) + 1} {stage}: {status} in {seconds:.1f} s of {a.budget:g} s"
        + (f": {error}" if error else "")
    )
    return 0


def start(a: argparse.Namespace) -> int:
    """Record how the check was started (env.json) and write the first summary.md."""
    update_stage(
        a.out,
        "env",
        check={
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "rehearsal": a.rehearse,
            "data_root": a.data_root or None,
            "budgets_s": dict(zip(STAGES, a.budgets)),
            "argv": sys.argv,
        },
    )
    write_summary(a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    if a.command == "check-limits":
        shrink_log(Path(a.names[0]))
        problems = limit_problems(Path(a.names[0]))
        for p in problems:
            print(f"gpu-check: {p}", file=sys.stderr)
        print(
            "file limits: "
            + ("VIOLATED" if problems else "ok (at most 8 files, 2 folders deep, 16 MiB each)")
        )
        return 1 if problems else 0
    if a.command == "start":
        return start(a)
    if a.command == "finish":
        return finish(a)
    if a.command == "rungs":
        from scripts.gpu_check.ladder import run_rungs

        run_rungs(context(a), a.names)
        return 0
    return run_stage(a)


if __name__ == "__main__":
    sys.exit(main())
