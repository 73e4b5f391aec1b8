"""Run the reproduction matrix: one `python -m repro train` subprocess per model and seed.

Subprocesses isolate failures (one crashing model does not lose the others) and make the matrix
resumable: a finished run (final.pt, matching config) is skipped, a partial one is re-run into
the same folder, where the trainer resumes from last.pt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.fileio import read_json
from repro.reproduce.presets import Preset, config_mismatch
from repro.reproduce.summary import build_summary
from repro.train.environment import environment
from repro.train.rundir import (
    CONFIG,
    FINAL,
    LOGS,
    SUMMARY,
    RunLock,
    load_runs,
    log_path,
    seed_dir,
    write_summary,
)


@dataclass
class Job:
    """One model/seed training."""

    model: str
    seed: int
    out: Path
    log: Path


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def on_cpu(device: str | None) -> bool:
    """Will the trainings run on the CPU (explicitly, or because CUDA is absent)?"""
    if device and device.startswith("cpu"):
        return True
    if device and device.startswith(("cuda", "mps")):
        return False
    import torch

    return not torch.cuda.is_available()


def check_requirements(preset: Preset, data_root: Path, device: str | None, force: bool) -> bool:
    """Refuse (ReproError, one line) a paper/common run without CUDA or official data; returns
    whether the data is the official set."""
    from repro.data import find_batches_dir
    from repro.data.cifar10 import load_cifar10

    find_batches_dir(data_root)  # clear error when the data is not there at all
    official = load_cifar10(data_root).official
    if force:
        return official
    missing = []
    if preset.needs_full_data and not official:
        missing.append(f"{data_root} is a subset, not the official CIFAR-10")
    if preset.needs_cuda and on_cpu(device):
        missing.append("no CUDA device")
    if missing:
        raise ReproError(
            f"preset {preset.name} needs the full official data and a CUDA GPU ("
            + "; ".join(missing)
            + "); run `--preset mini` (or `smoke`) instead, or pass --force to run it anyway"
        )
    return official


def train_command(
    preset: Preset,
    job: Job,
    data_root: Path,
    device: str | None,
    threads: int | None,
) -> list[str]:
    """The `python -m repro train` command line of one job."""
    cmd = [sys.executable, "-m", "repro", "train", "--model", job.model, "--recipe", preset.recipe]
    cmd += ["--seed", str(job.seed), "--out", str(job.out), "--data-root", str(data_root)]
    if preset.epochs is not None:
        cmd += ["--epochs", str(preset.epochs)]
    if preset.milestones is not None:
        cmd += ["--milestones", *map(str, preset.milestones)]
    if preset.lr is not None:
        cmd += ["--lr", str(preset.lr)]
    if preset.max_steps is not None:
        cmd += ["--max-steps", str(preset.max_steps)]
    if preset.eval_every is not None:
        cmd += ["--eval-every", str(preset.eval_every)]
    if device:
        cmd += ["--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd + list(preset.train_flags)


def job_state(job: Job, preset: Preset) -> str:
    """'done', 'partial' or 'new'; ReproError when the folder holds a different run."""
    cfg_path = job.out / CONFIG
    if not cfg_path.is_file():
        return "new"
    diff = config_mismatch(read_json(cfg_path), preset, job.model, job.seed)
    if diff:
        raise ReproError(
            f"{job.out} holds a different run ({'; '.join(diff[:3])}); "
            "choose another --out or delete that folder"
        )
    return "done" if (job.out / FINAL).is_file() else "partial"


def check_out_dir(out: Path, experiment: str, preset: str) -> None:
    """An existing run directory must be of the same experiment and preset (so it resumes)."""
    if not (out / SUMMARY).is_file():
        return
    old = read_json(out / SUMMARY)
    if (old.get("experiment"), old.get("preset")) != (experiment, preset):
        raise ReproError(
            f"{out} holds experiment {old.get('experiment')!r} preset {old.get('preset')!r}, "
            f"not {experiment!r}/{preset!r}; choose another --out"
        )


def run_jobs(
    jobs: list[Job],
    commands: dict[tuple[str, int], list[str]],
    parallel: int,
    echo=print,
) -> dict[tuple[str, int], int]:
    """Run the commands, up to ``parallel`` at once; returns each job's exit status."""
    pending = list(jobs)
    running: dict[tuple[str, int], tuple[subprocess.Popen, float, Any]] = {}
    codes: dict[tuple[str, int], int] = {}
    total, done = len(jobs), 0
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                log = job.log.open("a")
                echo(f"start  {job.model} seed{job.seed} -> {job.out} (log: {job.log})")
                proc = subprocess.Popen(
                    commands[(job.model, job.seed)], stdout=log, stderr=subprocess.STDOUT
                )
                running[(job.model, job.seed)] = (proc, time.monotonic(), log)
            time.sleep(0.2)
            for key, (proc, t0, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del running[key]
                done += 1
                codes[key] = rc
                took = time.monotonic() - t0
                what = "done" if rc == 0 else f"FAILED (exit {rc}); continuing with the others"
                echo(f"[{done}/{total}] {key[0]} seed{key[1]}: {what} ({took:.1f} s)")
    finally:
        for proc, _, log in running.values():  # interrupted: stop our own children only
            proc.terminate()
            proc.wait()
            log.close()
    return codes


def plan_jobs(
    out: Path, models: tuple[str, ...], seeds: int, preset: Preset, echo=print
) -> list[Job]:
    """The model/seed trainings still to do (a finished run with a matching config is skipped)."""
    jobs = [
        Job(m, s, seed_dir(out, m, s), log_path(out, m, s)) for m in models for s in range(seeds)
    ]
    todo = []
    for job in jobs:
        if job_state(job, preset) == "done":
            echo(f"skip   {job.model} seed{job.seed}: finished (final.pt present, config matches)")
        else:
            todo.append(job)
    return todo


def write_matrix_summary(
    out: Path, experiment: str, preset: str, models: tuple[str, ...], seeds: int, extra: dict
) -> dict[str, Any]:
    """summary.json: the matrix as its run folders are now, plus ``extra`` (status, timing...)."""
    runs = load_runs(out, models, range(seeds))
    summary = build_summary(experiment, preset, range(seeds), runs, extra)
    write_summary(out, summary)
    return summary


def print_results(summary: dict[str, Any], out: Path, echo=print) -> int:
    """Each model's final test error; 1 (and which runs) if any training failed, else 0."""
    for model, m in summary["models"].items():
        stat = m["final_test_error"]
        if stat["mean"] is not None:
            spread = f" ± {stat['std']:.2f}" if stat["std"] is not None else ""
            echo(f"{model}: final test error {stat['mean']:.2f}{spread} % ({stat['n']} seed(s))")
    if summary["failed"]:
        echo(
            f"{len(summary['failed'])} run(s) failed: {', '.join(summary['failed'])}; "
            f"see {out / LOGS}; re-run the same command to resume them"
        )
        return 1
    echo(f"summary: {out / SUMMARY}")
    return 0


def reproduce(
    experiment: str,
    models: tuple[str, ...],
    preset: Preset,
    out: Path,
    seeds: int,
    data_root: Path,
    device: str | None = None,
    parallel: int = 1,
    force: bool = False,
    echo=print,
) -> int:
    """Train the whole matrix (skipping finished runs), write summary.json; 0 if all finished."""
    if seeds < 1:
        raise ReproError(f"--seeds must be at least 1, got {seeds}")
    if parallel < 1:
        raise ReproError(f"--parallel must be at least 1, got {parallel}")
    official = check_requirements(preset, data_root, device, force)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, "repro reproduce"):  # one driver per matrix; each trainer locks its run
        check_out_dir(out, experiment, preset.name)
        todo = plan_jobs(out, models, seeds, preset, echo)
        threads = max(1, cpu_count() // parallel) if on_cpu(device) else None
        commands = {
            (j.model, j.seed): train_command(preset, j, data_root, device, threads) for j in todo
        }
        extra = {
            "preset_description": preset.description,
            "comparable_to_paper": preset.comparable and official,
            "forced": force,
            "data_official": official,
            "driver_environment": environment(),
            "status": "running",
            "failed": [],
            "wall_seconds": 0.0,
            "parallel": parallel,
        }
        write_matrix_summary(out, experiment, preset.name, models, seeds, extra)
        t0 = time.monotonic()
        codes = run_jobs(todo, commands, parallel, echo)
        extra["status"], extra["wall_seconds"] = "finished", time.monotonic() - t0
        extra["failed"] = sorted(f"{m}/seed{s}" for (m, s), rc in codes.items() if rc != 0)
        summary = write_matrix_summary(out, experiment, preset.name, models, seeds, extra)
    return print_results(summary, out, echo)
