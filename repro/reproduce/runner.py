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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.devices import PLACEMENT_ENV
from repro.environment import environment
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
from repro.train.signals import StopFlag


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


def check_counts(counts: Mapping[str, int | None]) -> None:
    """A count below one (flag -> value; None: not given) is one ReproError."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ReproError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True)
class MatrixPlan:
    """One matrix, planned once and handed to either launcher (local subprocesses or a Slurm job
    array), which only differ in how they start each command: every model/seed run, its
    `repro train` command, the matrix lock and the summary.json fields common to both."""

    experiment: str
    models: tuple[str, ...]
    preset: Preset  # with the --amp every run is asked for
    out: Path
    seeds: int
    data_root: Path
    device: str | None
    force: bool
    amp: str | None
    official: bool  # the data is the official CIFAR-10
    runs: tuple[Job, ...]  # every model x seed, in the matrix's order
    commands: Mapping[tuple[str, int], list[str]]  # (model, seed) -> its `repro train`
    driver_environment: Mapping[str, object]

    def lock(self) -> RunLock:
        """The matrix folder's lock (created here): one driver at a time starts or submits."""
        self.out.mkdir(parents=True, exist_ok=True)
        return RunLock(self.out, "repro reproduce")

    def todo(self, echo: Callable[[str], None] = print) -> list[Job]:
        """The runs still to do, read from the folder (take :meth:`lock` first): a finished run
        with a matching config is skipped; a folder of another matrix or run is one ReproError."""
        check_out_dir(self.out, self.experiment, self.preset.name)
        todo = []
        for job in self.runs:
            if job_state(job, self.preset) == "done":
                echo(
                    f"skip   {job.model} seed{job.seed}: finished (final.pt present, config matches)"
                )
            else:
                todo.append(job)
        return todo

    def summary_fields(self) -> dict[str, object]:
        """The summary.json fields either launcher writes (each adds its own after them)."""
        return {
            "preset_description": self.preset.description,
            "comparable_to_paper": self.preset.comparable and self.official,
            "forced": self.force,
            "data_official": self.official,
            "driver_environment": dict(self.driver_environment),
        }

    def write_summary(self, fields: Mapping[str, object]) -> dict[str, Any]:
        """summary.json as the run folders are now: :meth:`summary_fields`, then the launcher's."""
        extra = self.summary_fields() | dict(fields)
        return write_matrix_summary(
            self.out, self.experiment, self.preset.name, self.models, self.seeds, extra
        )


def plan_matrix(
    experiment: str,
    models: tuple[str, ...],
    preset: Preset,
    out: Path,
    seeds: int,
    data_root: Path,
    *,
    device: str | None = None,
    force: bool = False,
    amp: str | None = None,
    threads: int | None = None,
    gpu_per_run: bool = False,
) -> MatrixPlan:
    """Check the matrix once (seeds, the preset's data and CUDA needs) and plan every run's
    command. ``amp``: the ``--amp`` every run is asked for (a declared deviation where it differs
    from the recipe); ``threads``: each run's ``--threads``; ``gpu_per_run``: the launcher gives
    each run a GPU of its own (Slurm), so the preset's CUDA need is not checked here."""
    check_counts({"--seeds": seeds})
    preset = with_amp(preset, amp)
    needs = "cuda" if gpu_per_run and device in (None, "auto") else device
    official = check_requirements(preset, data_root, needs, force)
    runs = tuple(
        Job(m, s, seed_dir(out, m, s), log_path(out, m, s)) for m in models for s in range(seeds)
    )
    commands = {
        (j.model, j.seed): train_command(preset, j, data_root, device, threads) for j in runs
    }
    return MatrixPlan(
        experiment,
        tuple(models),
        preset,
        out,
        seeds,
        data_root,
        device,
        force,
        amp,
        official,
        runs,
        commands,
        environment(),
    )


@dataclass(frozen=True)
class LocalLaunch:
    """How the local launcher starts the runs: ``parallel`` unplaced at once, or ``per_gpu`` on
    each GPU of ``placed`` (``--gpus``, resolved to indices)."""

    parallel: int = 1
    gpus: str | None = None
    per_gpu: int | None = None
    placed: tuple[int, ...] | None = None

    @property
    def slots(self) -> list[int | None]:
        placed = list(self.placed) if self.placed is not None else None
        return gpu_slots(placed, self.per_gpu or 1, self.parallel)

    def threads(self, device: str | None) -> int | None:
        """Each run's ``--threads`` on the CPU: the cores shared by the runs at once."""
        return max(1, cpu_count() // len(self.slots)) if on_cpu(device) else None

    def note(self) -> str:
        """``REPRO_PLACEMENT``'s description of the slots."""
        per = f" --per-gpu {self.per_gpu}" if self.per_gpu else ""
        return f"{len(self.slots)} at once over --gpus {self.gpus}{per}"

    def options(self, plan: MatrixPlan) -> dict[str, object]:
        """The `repro reproduce` options that continue ``plan`` with this launcher."""
        options: dict[str, object] = {"device": plan.device}
        options["parallel"] = self.parallel if self.placed is None else None
        options |= {"gpus": self.gpus, "per-gpu": self.per_gpu, "force": plan.force}
        return options | {"amp": plan.amp}


def local_launch(
    parallel: int = 1,
    gpus: str | None = None,
    per_gpu: int | None = None,
    device: str | None = None,
) -> LocalLaunch:
    """Check the local launcher's counts and GPUs (one ReproError each) and place its slots."""
    check_counts({"--parallel": parallel, "--per-gpu": per_gpu})
    if per_gpu is not None and gpus is None:
        raise ReproError("--per-gpu needs --gpus (which GPUs to place the runs on)")
    placed = tuple(select_gpus(gpus, device)) if gpus is not None else None
    return LocalLaunch(parallel, gpus, per_gpu, placed)


def run_local(plan: MatrixPlan, launch: LocalLaunch, echo=print) -> int:
    """The local launcher: start the plan's unfinished runs as subprocesses, one per slot, and
    write summary.json; 0 if all finished, 1 if a run failed, 130/143 when SIGINT/SIGTERM
    stopped it (every run left resumable)."""
    slots = launch.slots
    command = continue_command(
        plan.experiment, plan.preset, plan.out, plan.seeds, plan.data_root, launch.options(plan)
    )
    with plan.lock():  # one driver per matrix; each trainer locks its run
        todo = plan.todo(echo)
        placed = list(launch.placed) if launch.placed is not None else None
        fields: dict[str, object] = {"status": "running", "failed": [], "wall_seconds": 0.0}
        fields |= {"parallel": len(slots), "gpus": placed}
        plan.write_summary(fields)
        t0 = time.monotonic()
        outcome = run_jobs(todo, dict(plan.commands), len(slots), echo, slots, launch.note())
        fields["wall_seconds"] = time.monotonic() - t0
        stopped = finish_matrix(outcome, fields, command, echo)
        summary = plan.write_summary(fields)
    return stopped if stopped is not None else print_results(summary, plan.out, echo)


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
    """The local launcher in one call: :func:`local_launch`, :func:`plan_matrix`,
    :func:`run_local` (scripts and tests; the CLI makes the same three calls)."""
    launch = local_launch(parallel, gpus, per_gpu, device)
    plan = plan_matrix(
        experiment,
        models,
        preset,
        out,
        seeds,
        data_root,
        device=device,
        force=force,
        amp=amp,
        threads=launch.threads(device),
    )
    return run_local(plan, launch, echo)
