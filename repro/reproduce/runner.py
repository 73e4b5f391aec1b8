"""Run the reproduction matrix: one `python -m repro train` subprocess per model and seed.

Subprocesses isolate failures (one crashing model does not lose the others) and make the matrix
resumable: a finished run (final.pt, matching config) is skipped, a partial one is re-run into
the same folder, where the trainer resumes from last.pt.

Interruption: SIGINT (Ctrl-C) or SIGTERM to the driver stops the whole matrix. Each trainer runs
in its own session (the terminal's Ctrl-C does not reach it) and gets exactly one SIGTERM from
the driver (it finishes its step, writes last.pt and exits 143; a second signal would make it give
up); no new job starts; summary.json says "interrupted" and the driver prints the command that
continues the matrix and exits 130 (SIGINT) or 143 (SIGTERM). A SIGKILL of the driver cannot be
caught: on Linux each trainer asks the kernel for one SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so it still saves its step and the matrix stays resumable.

Placement (``--gpus 0,1|all [--per-gpu K]``): each child sees one GPU through
``CUDA_VISIBLE_DEVICES``, and ``REPRO_PLACEMENT`` describes the slot; the trainer records both in
config.json (``cuda_visible_devices``, ``placement``).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.experiments import Preset, config_mismatch, with_amp
from repro.fileio import read_json
from repro.matrix_summary import build_summary
from repro.store import (
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
from repro.train.environment import environment
from repro.train.signals import StopFlag
from repro.train.trainer import PLACEMENT_ENV


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


def select_gpus(spec: str, device: str | None) -> list[int]:
    """``--gpus 0,1,3`` or ``all`` -> GPU indices; ReproError (one line) without CUDA, for an index
    that does not exist, or with a ``--device`` other than cuda."""
    import torch

    if device not in (None, "auto", "cuda"):
        raise ReproError(f"--gpus places each run on its GPU; drop --device {device}")
    if not torch.cuda.is_available():
        raise ReproError(
            f"--gpus {spec}: no CUDA device is available here; drop --gpus (use --parallel) "
            "or run on a machine with GPUs"
        )
    count = torch.cuda.device_count()
    if spec.strip() == "all":
        return list(range(count))
    try:
        gpus = [int(x) for x in spec.split(",")]
    except ValueError:
        raise ReproError(
            f"--gpus {spec!r} is not a list of GPU indices; use e.g. 0,1,2,3 or all"
        ) from None
    missing = [g for g in gpus if not 0 <= g < count]
    if missing:
        raise ReproError(
            f"--gpus {spec}: no GPU {missing[0]} here; this machine has {count} CUDA "
            f"device(s), 0-{count - 1}"
        )
    if len(set(gpus)) != len(gpus):
        raise ReproError(f"--gpus {spec} names a GPU twice; use --per-gpu K for K runs per GPU")
    return gpus


def gpu_slots(gpus: list[int] | None, per_gpu: int, parallel: int) -> list[int | None]:
    """One slot per concurrent training: ``per_gpu`` per GPU, spread across the GPUs first; without
    GPUs, ``parallel`` unplaced slots."""
    if gpus is None:
        return [None] * parallel
    return [g for _ in range(per_gpu) for g in gpus]


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` (Linux) that gives the child one SIGTERM when this process dies, even by
    SIGKILL, so a trainer saves last.pt instead of training on as an orphan; None elsewhere.
    libc is loaded here, in the parent: the forked child only calls prctl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no prctl: the child outlives a SIGKILLed driver
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: stop as it would have
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def child_env(slot: int | None, note: str) -> dict[str, str] | None:
    """A child's environment: ours, plus its GPU (None: inherit ours unchanged). ``slot`` is an
    index as torch sees it here: under a CUDA_VISIBLE_DEVICES of our own (a Slurm allocation),
    the child gets that list's entry."""
    if slot is None:
        return None
    ours = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    visible = ours[slot] if slot < len(ours) else str(slot)
    return {**os.environ, "CUDA_VISIBLE_DEVICES": visible, PLACEMENT_ENV: f"gpu {slot}; {note}"}


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


@dataclass
class Running:
    """One started training: its process, start time, log file and GPU slot."""

    job: Job
    proc: subprocess.Popen
    t0: float
    log: Any
    slot: int | None


@dataclass
class Outcome:
    """What ``run_jobs`` did: exit status of each job that ended on its own, the jobs stopped by
    an interruption (resumable, not failed), and the signal that stopped the matrix (or None)."""

    codes: dict[tuple[str, int], int] = field(default_factory=dict)
    interrupted: list[tuple[str, int]] = field(default_factory=list)
    signum: int | None = None


class MatrixStop(StopFlag):
    """SIGINT/SIGTERM to the driver: remember the first; a second one changes nothing (each child
    gets one SIGTERM only, and the driver still waits for them)."""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum


class JobPool:
    """The running trainings of a matrix, one per free slot."""

    def __init__(self, commands, slots: list[int | None], note: str, echo) -> None:
        self.commands, self.free, self.note, self.echo = commands, list(slots), note, echo
        self.running: dict[tuple[str, int], Running] = {}
        self.stopped: set[tuple[str, int]] = set()  # children sent their one SIGTERM
        self.outcome = Outcome()

    def start(self, job: Job) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        log = job.log.open("a")
        slot = self.free.pop(0)
        proc = subprocess.Popen(
            self.commands[(job.model, job.seed)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(slot, self.note),
            start_new_session=True,  # the terminal's Ctrl-C reaches the driver only
            preexec_fn=pdeathsig_setter(),  # a SIGKILLed driver: one SIGTERM to each child
        )
        where = "" if slot is None else f" on GPU {slot}"
        self.echo(
            f"start  {job.model} seed{job.seed}{where} -> {job.out} (pid {proc.pid}, log: {job.log})"
        )
        self.running[(job.model, job.seed)] = Running(job, proc, time.monotonic(), log, slot)

    def reap(self, total: int) -> None:
        """Collect the trainings that ended; say how each one went."""
        for key, r in list(self.running.items()):
            rc = r.proc.poll()
            if rc is None:
                continue
            r.log.close()
            del self.running[key]
            self.free.append(r.slot)
            took = time.monotonic() - r.t0
            if key in self.stopped and rc != 0:
                self.outcome.interrupted.append(key)
                what = f"interrupted (exit {rc}); resumable"
            else:
                self.outcome.codes[key] = rc
                what = "done" if rc == 0 else f"FAILED (exit {rc}); continuing with the others"
            n = len(self.outcome.codes) + len(self.outcome.interrupted)
            self.echo(f"[{n}/{total}] {key[0]} seed{key[1]}: {what} ({took:.1f} s)")

    def stop_all(self, signum: int | None = None) -> None:
        """One SIGTERM to each running child not yet sent one (never a second)."""
        todo = [
            k for k, r in self.running.items() if k not in self.stopped and r.proc.poll() is None
        ]
        if todo and signum is not None and not self.stopped:
            name = signal.Signals(signum).name
            self.echo(f"received {name}: stopping the running trainings (each saves its step)...")
        for key in todo:
            self.running[key].proc.send_signal(signal.SIGTERM)
            self.stopped.add(key)


def run_jobs(
    jobs: list[Job],
    commands: dict[tuple[str, int], list[str]],
    parallel: int,
    echo=print,
    slots: list[int | None] | None = None,
    note: str = "",
) -> Outcome:
    """Run the commands, one per slot at once (``parallel`` unplaced slots by default), until
    all ended or SIGINT/SIGTERM stops the matrix: then each running child gets one SIGTERM, is
    waited for, and no new job starts."""
    pending = list(jobs)
    pool = JobPool(commands, slots or gpu_slots(None, 1, parallel), note, echo)
    with MatrixStop() as flag:
        try:
            while pending or pool.running:
                while pending and pool.free and flag.signum is None:
                    pool.start(pending.pop(0))
                time.sleep(0.2)
                if flag.signum is not None:
                    pending.clear()
                    pool.stop_all(flag.signum)
                pool.reap(len(jobs))
        finally:
            pool.stop_all()  # an unexpected error: still stop our own children, once each
            for r in pool.running.values():
                r.proc.wait()
                r.log.close()
    pool.outcome.signum = flag.signum
    return pool.outcome


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


def continue_command(
    experiment: str, preset: Preset, out: Path, seeds: int, data_root: Path, options: dict
) -> str:
    """The `repro reproduce` command line that continues this matrix (finished runs skipped)."""
    cmd = ["repro", "reproduce", "--experiment", experiment, "--preset", preset.name]
    cmd += ["--out", str(out), "--seeds", str(seeds), "--data-root", str(data_root)]
    for flag, value in options.items():
        if value is True:
            cmd.append(f"--{flag}")
        elif value not in (None, False):
            cmd += [f"--{flag}", str(value)]
    return shlex.join(cmd)


def check_counts(seeds: int, parallel: int, gpus: str | None, per_gpu: int | None) -> None:
    """Counts below one, and --per-gpu without --gpus, are one ReproError each."""
    for name, value in (("--seeds", seeds), ("--parallel", parallel), ("--per-gpu", per_gpu)):
        if value is not None and value < 1:
            raise ReproError(f"{name} must be at least 1, got {value}")
    if per_gpu is not None and gpus is None:
        raise ReproError("--per-gpu needs --gpus (which GPUs to place the runs on)")


def finish_matrix(
    outcome: Outcome, extra: dict[str, object], command: str, echo=print
) -> int | None:
    """Fill ``extra``'s status and failed/interrupted runs; when a signal stopped the matrix, say
    how to continue it and return the exit code (130 SIGINT, 143 SIGTERM), else None."""
    extra["failed"] = sorted(f"{m}/seed{s}" for (m, s), rc in outcome.codes.items() if rc != 0)
    extra["interrupted"] = sorted(f"{m}/seed{s}" for m, s in outcome.interrupted)
    if outcome.signum is None:
        extra["status"] = "finished"
        return None
    extra["status"] = "interrupted"
    extra["continue_command"] = command
    name = signal.Signals(outcome.signum).name
    echo(f"matrix interrupted by {name}; every run is resumable. Continue it with:\n  {command}")
    return 130 if outcome.signum == signal.SIGINT else 143


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
    gpus: str | None = None,
    per_gpu: int | None = None,
    amp: str | None = None,
) -> int:
    """Train the whole matrix (skipping finished runs), write summary.json; 0 if all finished,
    1 if a run failed, 130/143 when SIGINT/SIGTERM stopped it (every run left resumable).
    ``amp``: the ``--amp`` every run is asked for (a declared deviation where it differs)."""
    check_counts(seeds, parallel, gpus, per_gpu)
    preset = with_amp(preset, amp)
    placed = select_gpus(gpus, device) if gpus is not None else None
    slots = gpu_slots(placed, per_gpu or 1, parallel)
    official = check_requirements(preset, data_root, device, force)
    options = {"device": device, "parallel": parallel if placed is None else None}
    options |= {"gpus": gpus, "per-gpu": per_gpu, "force": force, "amp": amp}
    command = continue_command(experiment, preset, out, seeds, data_root, options)
    note = f"{len(slots)} at once over --gpus {gpus}" + (f" --per-gpu {per_gpu}" if per_gpu else "")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, "repro reproduce"):  # one driver per matrix; each trainer locks its run
        check_out_dir(out, experiment, preset.name)
        todo = plan_jobs(out, models, seeds, preset, echo)
        threads = max(1, cpu_count() // len(slots)) if on_cpu(device) else None
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
            "parallel": len(slots),
            "gpus": placed,
        }
        write_matrix_summary(out, experiment, preset.name, models, seeds, extra)
        t0 = time.monotonic()
        outcome = run_jobs(todo, commands, len(slots), echo, slots, note)
        extra["wall_seconds"] = time.monotonic() - t0
        stopped = finish_matrix(outcome, extra, command, echo)
        summary = write_matrix_summary(out, experiment, preset.name, models, seeds, extra)
    return stopped if stopped is not None else print_results(summary, out, echo)
