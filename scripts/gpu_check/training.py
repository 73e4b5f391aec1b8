"""Stage 4: the core four nets trained for real, time-boxed, by ``repro reproduce``'s own runner
(one ``python -m repro train`` per net, on the data present, with the ladder's fastest path): once
``--parallel K`` on the one device and once one after another. Each run stops after
``max_steps`` iterations and is evaluated every ``eval_every``; its steady speed is the trainer's
own ``images_per_s`` between its last two evaluations, called steady from the third evaluation
on (start-up and compiling fall in the first window, the recompile for the mini set's short last
batch in the second). The 200-epoch (``common``) and 64k-iteration (``paper``) projections are
training steps only: iterations x batch / that speed, evaluations excluded."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from scripts.gpu_check.common import Context, no_figures, read_stage, update_stage

OFFICIAL_TRAIN = 50_000
BATCH = 128  # the common and paper recipes' batch


def fastest_flags(ctx: Context) -> tuple[str, list[str]]:
    """The ladder's fastest rung and its `repro train` flags (the CUDA default path, `--amp bf16
    --channels-last on --compile on`, when the ladder has no answer)."""
    ladder = read_stage(ctx.out, "ladder")
    name = ladder.get("fastest")
    if name:
        return name, list(ladder["rungs"][name]["train_flags"])
    fallback = ["--amp", "bf16", "--channels-last", "on", "--compile", "on"]
    return "none measured: the default path", fallback if ctx.sizes.device == "cuda" else []


def projections(images_per_s: float, batch: int) -> dict[str, float]:
    """Hours of training steps for 200 epochs of 50k images and for the paper's 64k iterations."""
    from repro.recipes import build_schedule, get_recipe

    out = {}
    for key, name in (("hours_200_epochs", "common"), ("hours_64k_iterations", "paper")):
        recipe = get_recipe(name, batch_size=batch)
        total = build_schedule(recipe, OFFICIAL_TRAIN, None).total_iterations
        out[key] = total * batch / images_per_s / 3600
    return out


def kill_trainers(root: Path) -> list[int]:
    """SIGKILL what is left of the trainings writing under ``root`` (a trainer still compiling
    when told to stop only stops after its compile; the next stage needs the device free)."""
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "train" in words and any(w.startswith(str(root)) for w in words):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
            except OSError:
                pass
    return killed


def run_figures(root: Path, model: str) -> dict[str, Any]:
    """What one run's metrics.jsonl says: iterations, seconds, steady images/s, test error."""
    from repro.store import read_metrics, seed_dir

    path = seed_dir(root, model, 0) / "metrics.jsonl"
    records = read_metrics(path) if path.is_file() else []
    if not records:
        return {"status": "no evaluation recorded"}
    last = records[-1]
    out = {
        "status": "ok",
        "iterations": last["iteration"],
        "seconds_to_last_evaluation": last["seconds"],
        "test_error": last["test_error"],
        "images_per_s": last["images_per_s"],
        "steady": len(records) > 2,  # False: the window may hold start-up or compiling
    }
    return {**out, **projections(last["images_per_s"], BATCH)}


def run_matrix(ctx: Context, preset: Any, parallel: int, seconds: float) -> dict[str, Any]:
    """``repro reproduce`` of the core nets into a fresh folder, stopped by SIGINT (the runner
    stops every training cleanly) when ``seconds`` have passed."""
    from repro.data import resolve_data_root
    from repro.reproduce.runner import reproduce

    root = ctx.work / f"core-parallel{parallel}"
    if seconds <= 1:
        return {"parallel": parallel, "exit": "not run: no time left in the stage's budget"}
    stop = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    killed: list[int] = []
    kill = threading.Timer(
        seconds + ctx.sizes.margin_s / 2, lambda: killed.extend(kill_trainers(root))
    )
    t0 = time.monotonic()
    stop.start()
    kill.start()
    try:
        rc: int | str = reproduce(
            "core",
            ctx.sizes.train_models,
            preset,
            root,
            seeds=1,
            data_root=resolve_data_root(ctx.data_root or None),
            device=ctx.sizes.device,
            parallel=parallel,
        )
    except KeyboardInterrupt:
        rc = "stopped at its time box before the runner had started"
    finally:
        stop.cancel()
        kill.cancel()
    wall = time.monotonic() - t0
    killed += kill_trainers(root)
    runs = {m: run_figures(root, m) for m in ctx.sizes.train_models}
    steady = [r["images_per_s"] for r in runs.values() if r.get("steady")]
    return {
        "parallel": parallel,
        "exit": rc,
        "stopped_by_time_box": rc == 130 or isinstance(rc, str),
        "wall_seconds": wall,
        "killed_after_the_time_box": killed,
        "sum_of_steady_images_per_s": sum(steady) if steady else None,
        "mean_of_steady_images_per_s": sum(steady) / len(steady) if steady else None,
        "runs": runs,
    }


def stage_training(ctx: Context) -> None:
    from repro.experiments import Preset

    s = ctx.sizes
    path, flags = fastest_flags(ctx)
    preset = Preset(
        name="gpu-check",
        recipe="common",
        description=f"GPU CHECK: {s.max_steps} iterations per net, time-boxed; not a reproduction",
        max_steps=s.max_steps,
        eval_every=s.eval_every,
        train_flags=(*flags, *s.train_flags),
    )
    update_stage(
        ctx.out,
        "training",
        models=list(s.train_models),
        max_steps=s.max_steps,
        path=path,
        train_flags=list(preset.train_flags),
    )
    # --parallel K first: its K compiles run side by side on a cold cache, and the trainings one
    # after another then start from the warm cache
    parallel = run_matrix(ctx, preset, s.parallel, ctx.remaining() * 0.5)
    update_stage(ctx.out, "training", parallel=parallel)
    sequential = run_matrix(ctx, preset, 1, ctx.remaining())
    update_stage(ctx.out, "training", sequential=sequential)
    together = parallel.get("sum_of_steady_images_per_s")
    alone = sequential.get("mean_of_steady_images_per_s")
    if together and alone:  # K nets side by side against one net alone: how much K fills it
        update_stage(ctx.out, "training", parallel_gain=together / alone)
    runs = {
        f"{m} --parallel {r['parallel']}": v
        for r in (parallel, sequential)
        for m, v in r.get("runs", {}).items()
    }
    no_figures("training run", runs)
