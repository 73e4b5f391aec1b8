"""`repro reproduce --launcher slurm`: the matrix as one Slurm job array, through submitit.

Each array task runs the very `repro train` command the local launcher runs
(:func:`repro.reproduce.runner.train_command`), into the same ``<model>/seed<k>`` folder and
``logs/<model>-seed<k>.log``. submitit's own files (sbatch script, pickles, its job logs) go to
``<matrix>/submitit/``; ``slurm_jobs.json`` records which job trains which run.

Preemption and time limits: sbatch asks Slurm for USR2 ``SIGNAL_DELAY_S`` seconds before the kill
(``--signal``); submitit then calls :meth:`TrainJob.checkpoint`, which gives `repro train` one
SIGTERM (it finishes its step, writes last.pt and exits), waits for it and has submitit requeue
the job: the same command again, which resumes from last.pt exactly. The trainer itself ignores
USR2 (Slurm signals every process of the job; only the job acts on it).

``--status`` reads the run folders (final.pt, a live trainer's lock), the job record, the
launcher's lines in each run's log and, for jobs that may still be queued or running, the
scheduler (sacct, through submitit). A re-run submits only what is neither finished nor still
queued or running, and refuses when it cannot tell.

submitit is optional (``pip install 'resnet-repro[slurm]'``) and imported lazily, here only.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict, cast

from repro.errors import ReproError
from repro.experiments import Preset
from repro.fileio import read_json, write_json
from repro.reproduce import runner
from repro.store import (
    FINAL,
    LAST,
    LOCK,
    expected_end,
    load_run,
    log_path,
    read_summary,
    seed_dir,
)
from repro.tables import text_table

RECORD = "slurm_jobs.json"  # in the matrix folder: run -> job id, log, when submitted
SUBMITIT_DIR = "submitit"  # in the matrix folder: submitit's scripts, pickles and job logs
SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: the trainer's step + last.pt
SIGNAL_EARLY_S = 60  # Slurm may deliver it up to 60 s before that (its signal timer's period)
START_S = 60  # a job's start: Python, torch and `repro train` up to its first checkpoint
MIN_TIME = math.ceil((SIGNAL_DELAY_S + SIGNAL_EARLY_S + START_S) / 60)  # minutes
MAX_TIMEOUT_REQUEUES = 10  # time-limit requeues per run (a preemption always requeues)
INSTALL = "pip install 'resnet-repro[slurm]'"
NOTE = "[repro slurm]"  # the launcher's own lines in a run's log
EXITED = re.compile(r"repro train exited with (-?\d+)")
KILLED = (
    "its job was killed (scancel, scontrol requeue or a node failure) before repro train exited"
)
STOPPED = (130, 143, -2, -15)  # `repro train`'s exits on SIGINT / SIGTERM: resumable
TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})$")
MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
GONE = "GONE"  # the state of a job that neither squeue nor sacct knows

# sacct's job states, as queued / running / ended (anything else: unknown)
SLURM_PHASES = {
    "queued": {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"},
    "running": {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING"},
    "ended": {
        "GONE",  # ours: neither squeue nor sacct knows the job (cancelled while pending)
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    },
}


def parse_time(text: str) -> int:
    """``--time``: minutes (``90``), ``H:MM:SS`` or ``D-H:MM:SS``, as whole minutes (rounded up)."""
    text = str(text).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    match = TIME.match(text)
    if match:
        days, hours, minutes, seconds = (int(x or 0) for x in match.groups())
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        if minutes < 60 and seconds < 60 and total > 0:
            return math.ceil(total / 60)
    raise ReproError(
        f"--time {text!r} is not a wall time; give minutes (e.g. 90) or H:MM:SS (e.g. 1:30:00)"
    )


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks Slurm for (one `repro train` each), and how to submit."""

    time: str | None = None
    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int | None = None
    dry_run: bool = False
    cluster: str = "slurm"  # "local": submitit's LocalExecutor runs the tasks here (tests)

    def check(self) -> None:
        """One ReproError for the first bad value, before anything is written."""
        if self.time is None:
            raise ReproError(
                "--launcher slurm needs --time, each run's wall-time limit (minutes or H:MM:SS); "
                "a run that needs longer is requeued and resumes from last.pt"
            )
        if parse_time(self.time) < MIN_TIME:
            raise ReproError(
                f"--time {self.time}: too short to train; each job gets its stop signal "
                f"{SIGNAL_DELAY_S} s before the limit (Slurm: up to {SIGNAL_EARLY_S} s sooner), "
                f"which leaves no time to start `repro train` and checkpoint; give at least "
                f"{MIN_TIME} minutes"
            )
        if self.gpus_per_run not in (0, 1):
            raise ReproError(
                f"--gpus-per-run {self.gpus_per_run}: one `repro train` uses one GPU (0: a CPU "
                "run); one run over several GPUs is a torchrun job (README, Scaling out)"
            )
        counts = [("--cpus-per-run", self.cpus_per_run)]
        counts.append(("--slurm-array-parallelism", self.array_parallelism))
        for name, value in counts:
            if value is not None and value < 1:
                raise ReproError(f"{name} must be at least 1, got {value}")
        if self.mem is not None and not MEM.match(self.mem):
            raise ReproError(f"--mem {self.mem!r} is not a size; give e.g. 16G or 4000M")

    def sbatch_parameters(self, job_name: str) -> SbatchParams:
        """The parameters of submitit's SlurmExecutor (its names of sbatch's options); the
        options not given are left to sbatch."""
        params = SbatchParams(
            job_name=job_name,
            time=parse_time(self.time or "0"),
            nodes=1,
            ntasks_per_node=1,
            signal_delay_s=SIGNAL_DELAY_S,
            stderr_to_stdout=True,
        )
        if self.partition is not None:
            params["partition"] = self.partition
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.cpus_per_run is not None:
            params["cpus_per_task"] = self.cpus_per_run
        if self.mem is not None:
            params["mem"] = self.mem
        if self.account is not None:
            params["account"] = self.account
        if self.qos is not None:
            params["qos"] = self.qos
        if self.constraint is not None:
            params["constraint"] = self.constraint
        if self.array_parallelism is not None:
            params["array_parallelism"] = self.array_parallelism
        return params


def import_submitit() -> Any:
    """submitit, or one ReproError saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ReproError(
            f"--launcher slurm needs submitit, which is not installed: {INSTALL} "
            "(or use --launcher local)"
        ) from None
    return submitit


def check_slurm_here() -> None:
    """sbatch and srun on PATH, else one ReproError saying what to use instead."""
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ReproError(
            f"--launcher slurm: no Slurm found here ({' and '.join(missing)} not on PATH); "
            "run it on the cluster's login node, or use --launcher local, or --slurm-dry-run "
            "to print the job script without submitting"
        )


def partition_offers_gpus(partition: str | None) -> bool | None:
    """Does ``partition`` (None: the cluster's default one, marked ``*`` by sinfo) have a node
    with a ``gpu`` GRES? None when sinfo is absent or cannot tell (an unknown partition)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%P|%G"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split("|", 1) for line in done.stdout.splitlines() if "|" in line]
    wanted = [
        g for name, g in rows if (name.rstrip("*") == partition if partition else "*" in name)
    ]
    if done.returncode != 0 or not wanted:
        return None
    return any("gpu" in gres for gres in wanted)


def default_gpus_per_run(partition: str | None) -> tuple[int, str | None]:
    """``--gpus-per-run`` when it is not given: 1, unless sinfo shows the partition has no GPU
    (then 0, with a note; sbatch would refuse a GPU request there)."""
    if partition_offers_gpus(partition) is False:
        name = f"partition {partition}" if partition else "the default partition"
        return 0, (
            f"note: {name} has no GPUs (sinfo shows no gpu GRES): each run asks for none "
            "(--gpus-per-run 0); give --gpus-per-run 1 to ask anyway"
        )
    return 1, None


# ---------------------------------------------------------------- one array task


def print_err(text: str) -> None:
    """A warning line on stderr."""
    print(text, file=sys.stderr)


def note(log: Path, text: str) -> None:
    """One launcher line in a run's log (the trainer appends to the same file)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    with log.open("a") as f:
        f.write(f"{NOTE} {stamp} {text}\n")


def job_id() -> str:
    """This task's Slurm (or submitit-local) job id, as submitit names it."""
    from submitit import JobEnvironment

    try:
        return str(JobEnvironment().job_id)
    except Exception:  # not inside a submitit job (a direct call)
        return "-"


def wait_polling(proc: subprocess.Popen) -> int:
    """Wait for ``proc`` without holding Popen's wait lock, so that the preemption handler,
    which runs in this same thread, can wait for it too."""
    while proc.poll() is None:
        time.sleep(0.2)
    return int(proc.returncode)


def child_setup() -> Callable[[], None]:
    """The trainer's ``preexec_fn``: ignore submitit's preemption signal (Slurm sends it to every
    process of the job; the job forwards one SIGTERM instead) and die with the job (Linux)."""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    usr = getattr(signal, name, signal.SIGUSR2)
    die = runner.pdeathsig_setter()

    def setup() -> None:
        signal.signal(usr, signal.SIG_IGN)
        if die is not None:
            die()

    return setup


class SbatchParams(TypedDict, total=False):
    """The parameters of submitit's SlurmExecutor this launcher sets (submitit's names and
    types of sbatch's options)."""

    job_name: str
    time: int  # minutes
    nodes: int
    ntasks_per_node: int
    signal_delay_s: int
    stderr_to_stdout: bool
    partition: str
    gpus_per_node: int
    cpus_per_task: int
    mem: str
    account: str
    qos: str
    constraint: str
    array_parallelism: int


class TrainJobState(TypedDict):
    """What a pickled TrainJob carries to the cluster (never its live process)."""

    command: list[str]
    log: str


class TrainJob:
    """One model/seed training as a submitit job: runs its `repro train` command into the run's
    log and fails when the trainer does; :meth:`checkpoint` is submitit's preemption hook."""

    def __init__(self, command: list[str], log: str) -> None:
        self.command, self.log = list(command), str(log)
        self._proc: subprocess.Popen | None = None
        self._log_start = 0

    def __getstate__(self) -> TrainJobState:
        return {"command": self.command, "log": self.log}  # never the live process

    def __setstate__(self, state: TrainJobState) -> None:
        self.command, self.log = list(state["command"]), str(state["log"])
        self._proc, self._log_start = None, 0

    def __call__(self) -> int:
        log = Path(self.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        if unfinished_attempt(last_note(log)):
            note(log, f"job {job_id()}: the last attempt left no exit status: {KILLED}")
        with log.open("a") as out:
            self._log_start = out.tell()
            self._proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach it only through this job
                preexec_fn=child_setup(),
            )
            note(
                log,
                f"job {job_id()} on {socket.gethostname()} (pid {os.getpid()}): started "
                f"`repro train` as pid {self._proc.pid}: {shlex.join(self.command)}",
            )
            rc = wait_polling(self._proc)
        note(log, f"job {job_id()}: repro train exited with {rc}")
        if rc != 0:
            raise ReproError(f"repro train exited with {rc}; see {self.log}")
        return rc

    def _trainer_is_stopping(self) -> bool:
        """Did the trainer already get a signal (a scheduler signalling the whole job)? Its
        'received SIG...' line in the log says so: a second signal would make it give up."""
        try:
            with open(self.log, errors="replace") as f:
                f.seek(self._log_start)
                return "received SIG" in f.read()
        except OSError:
            return False

    def run_folder(self) -> Path | None:
        """The run's folder (the command's ``--out``)."""
        return (
            Path(self.command[self.command.index("--out") + 1]) if "--out" in self.command else None
        )

    def checkpoint(self) -> Any:
        """Preempted or at the time limit (submitit's USR2): one SIGTERM to `repro train`, which
        finishes its step and writes last.pt; wait for it; requeue the same command (it resumes
        from last.pt) unless the run finished or failed meanwhile."""
        from submitit.helpers import DelayedSubmission

        proc, rc = self._proc, None
        if proc is not None:
            if proc.poll() is None and not self._trainer_is_stopping():
                proc.send_signal(signal.SIGTERM)
            rc = wait_polling(proc)
        run = self.run_folder()
        why = no_requeue_reason(rc, run is not None and (run / FINAL).is_file())
        exited = f"repro train exited with {rc}" if rc is not None else "repro train not started"
        if why:  # submitit then ends the job without requeueing it
            note(Path(self.log), f"job {job_id()}: preempted or timed out; {exited}; {why}")
            return None
        note(Path(self.log), f"job {job_id()}: preempted or timed out; {exited}; requeued")
        return DelayedSubmission(TrainJob(self.command, self.log))


def unfinished_attempt(last: str) -> bool:
    """Is the launcher's last line in a log an attempt's start with no word of its end (its job
    was killed before it could write one)?"""
    return bool(last) and "started `repro train`" in last


def no_requeue_reason(rc: int | None, finished: bool) -> str:
    """Why a preempted or timed-out job is not requeued ('' to requeue): only a run that neither
    finished (final.pt, exit 0) nor failed on its own (an exit other than a signal's) goes on."""
    if finished or rc == 0:
        return "the run is finished: not requeued"
    if rc is not None and rc not in STOPPED:
        return "the run failed: not requeued"
    return ""


# ---------------------------------------------------------------- what is where


class JobEntry(TypedDict):
    """One run's job in slurm_jobs.json."""

    job_id: str
    log: str
    submitted: str  # ISO time, UTC


class JobRecord(TypedDict, total=False):
    """slurm_jobs.json: each run's job (by ``model/seed<k>``), the cluster, submitit's folder."""

    runs: dict[str, JobEntry]
    cluster: str
    folder: str


def read_record(out: Path) -> JobRecord:
    """``slurm_jobs.json`` of a matrix (empty when there is none)."""
    path = out / RECORD
    if not path.is_file():
        return {}
    record = read_json(path)
    if not isinstance(record.get("runs"), dict):
        raise ReproError(f"{path} has no 'runs'; it was not written by `repro reproduce`")
    return cast(JobRecord, record)  # as submit() writes it


def lock_holder(folder: Path) -> int | None:
    """The pid holding ``folder``'s lock (the trainer, or a local matrix driver), read from
    /proc/locks without touching the lock; None when it is free or this cannot be known here."""
    try:
        st = (folder / LOCK).stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in text.splitlines():  # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue  # a POSIX lock, or a waiter ("->")
        try:
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == want:
                return int(parts[4])
        except ValueError:
            continue
    return None


def local_job_alive(job: str) -> bool:
    """Is the submitit-local controller with this pid still running?"""
    try:
        cmdline = Path(f"/proc/{int(job)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit" in cmdline  # a zombie or a reused pid has another (or no) command line


def slurm_phase(state: str) -> str:
    """sacct's state (``CANCELLED by 123`` too) as queued / running / ended / unknown."""
    word = state.split()[0].upper() if state.strip() else ""
    return next((p for p, states in SLURM_PHASES.items() if word in states), "unknown")


def array_tasks(job: str) -> tuple[str, list[str] | None]:
    """A JobID as squeue/sacct print it -> (its own id, None) for ``23`` or ``23_2``, or
    (``23``, [``23_2``, ``23_3``...]) for a row of pending tasks ``23_[2-3,5%4]``."""
    match = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job)
    if not match:
        return job, None
    base, tasks = match.group(1), []
    for part in match.group(2).split(","):
        first, _, last = part.partition("-")
        tasks += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return base, tasks


def parse_states(text: str) -> dict[str, str]:
    """``JobID|State`` rows (squeue -r, sacct -X -P) -> job or task id -> state. A task's own
    row wins over a row of pending tasks that names it (sacct may still print that row after the
    task started or ended), whatever their order."""
    own: dict[str, str] = {}
    ranged: dict[str, str] = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        if not job or not state or "." in job:
            continue  # a step (23_2.batch) or a blank line
        base, tasks = array_tasks(job)
        if tasks is None:
            own[job] = state.strip()
        else:
            ranged |= dict.fromkeys(tasks, state.strip())
    return ranged | own


def slurm_command(argv: list[str]) -> tuple[str | None, str]:
    """(stdout, '') of a Slurm client command, or (None, its first error line)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{argv[0]}: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return None, lines[0] if lines else f"{argv[0]} exited with {done.returncode}"
    return done.stdout, ""


def combine_states(jobs: list[str], queue: dict[str, str] | None, acct: dict[str, str]) -> dict:
    """Each job id's state: squeue's while it lists the job (it is the controller's own view);
    once squeue answered without it, sacct's final state, or GONE when sacct has no row either
    (a task cancelled while it was pending has none): never queued or running again. Without
    squeue's answer, sacct's state, '' (unknown) when it has none."""
    states = {}
    for job in jobs:
        if queue is not None and job in queue:
            states[job] = queue[job]
        elif queue is not None:
            states[job] = acct[job] if slurm_phase(acct.get(job, "")) == "ended" else GONE
        else:
            states[job] = acct.get(job, "")
    return states


def slurm_states(jobs: list[str], warn: Callable[[str], None]) -> dict[str, str]:
    """Job or array-task id -> state, from one squeue and (for the jobs it does not list) one
    sacct call; a client's error is one warning line, once."""
    queue = acct = None
    problems = []
    bases = ",".join(sorted({j.split("_")[0] for j in jobs}))
    if shutil.which("squeue"):
        text, problem = slurm_command(["squeue", "-h", "-r", "-o", "%i|%T", "-j", bases])
        if "Invalid job id" in problem:  # its answer when it knows none of them (one id)
            text, problem = "", ""
        queue = parse_states(text) if text is not None else None
        problems.append(problem)
    rest = [j for j in jobs if queue is None or j not in queue]
    if rest and shutil.which("sacct"):
        bases = ",".join(sorted({j.split("_")[0] for j in rest}))
        argv = ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", bases]
        text, problem = slurm_command(argv)
        acct = parse_states(text) if text is not None else None
        problems.append(problem)
    problems = [p for p in problems if p]
    if problems:
        warn(f"warning: {'; '.join(problems)} (job states from what answered)")
    return combine_states(jobs, queue, acct or {})


def scheduler_states(record: JobRecord, warn: Callable[[str], None]) -> dict[str, str]:
    """Run key -> the scheduler's state of its job ('' where it cannot be known)."""
    runs = record.get("runs", {})
    if record.get("cluster") == "local":
        alive = {k: local_job_alive(r["job_id"]) for k, r in runs.items()}
        return {k: "RUNNING" if a else "COMPLETED" for k, a in alive.items()}
    if not runs:
        return {}
    states = slurm_states([str(r["job_id"]) for r in runs.values()], warn)
    return {k: states[str(r["job_id"])] for k, r in runs.items()}


def last_note(log: Path) -> str:
    """The launcher's last line in a run's log ('' when there is none)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.startswith(NOTE)]
    return lines[-1] if lines else ""


def run_status(run: Path, log: Path, entry: JobEntry | None, state: str, failed: bool) -> str:
    """done / running / queued / interrupted / failed / cancelled / not started / unknown, for
    one run: the folder first (final.pt, a live trainer), then the scheduler's ``state`` of its
    job, then the launcher's note in its log."""
    if (run / FINAL).is_file():
        return "done"
    if lock_holder(run) is not None:
        return "running"
    phase = slurm_phase(state)
    if phase in ("queued", "running"):
        return phase
    exited = EXITED.search(last_note(log)) if entry else None
    if exited:
        return "interrupted" if int(exited.group(1)) in STOPPED else "failed"
    if entry and phase == "unknown":
        return "unknown"
    if failed:
        return "failed"
    if (run / LAST).is_file():
        return "interrupted"
    if entry and state.split()[0] in ("CANCELLED", GONE):
        return "cancelled"  # before `repro train` started: nothing lost, submitted again
    if entry:  # the job ended without a checkpoint or a word: killed early, or lost
        return "failed"
    return "not started"


def progress(run: Path) -> str:
    """``iteration/total`` of the run's last evaluation ('-' before the first)."""
    r = load_run(run)
    if not r.metrics:
        return "-"
    end = expected_end(r.config) if r.config else None
    return f"{r.metrics[-1]['iteration']}/{end if end is not None else '?'}"


# ---------------------------------------------------------------- --status


def status_rows(
    out: Path, summary: dict[str, Any], record: JobRecord, warn: Callable[[str], None]
) -> list[tuple]:
    """One row per model and seed: model, seed, status, progress, job id, log."""
    states = scheduler_states(record, warn) if record else {}
    driver = lock_holder(out) if not record else None  # a local `repro reproduce` at work
    failed = set(summary.get("failed") or [])
    rows = []
    for model in summary["models"]:
        for seed in summary["seeds"]:
            key, run, log = (
                f"{model}/seed{seed}",
                seed_dir(out, model, seed),
                log_path(out, model, seed),
            )
            entry = record.get("runs", {}).get(key)
            status = run_status(run, log, entry, states.get(key, ""), key in failed)
            if driver is not None and status in ("not started", "interrupted"):
                status = "queued"  # the local driver will start it
            job = entry["job_id"] if entry else "-"
            rows.append((model, seed, status, progress(run), job, str(log)))
    return rows


def matrix_status(
    out: Path, echo: Callable[[str], None] = print, warn: Callable[[str], None] = print_err
) -> dict[str, str]:
    """Print the matrix, one line per model and seed; return run key -> status."""
    summary = read_summary(out)  # one ReproError when ``out`` is not a matrix
    record = read_record(out)
    rows = status_rows(out, summary, record, warn)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[2]] = counts.get(row[2], 0) + 1
    launcher = f"Slurm ({record.get('cluster')})" if record else "local"
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    echo(f"{out}: {summary['experiment']} x {summary['preset']}, launcher {launcher}: {tally}")
    echo(text_table(("model", "seed", "status", "progress", "job", "log"), rows, "lrlrll"))
    return {f"{r[0]}/seed{r[1]}": r[2] for r in rows}


# ---------------------------------------------------------------- submitting


def to_submit(
    jobs: list[runner.Job], record: JobRecord, echo: Callable, warn: Callable = print_err
) -> list[runner.Job]:
    """The unfinished runs that no job is still queued for or running; one ReproError for a run
    whose job's state cannot be known (it might be queued: never submit it twice)."""
    states = scheduler_states(record, warn) if record else {}
    todo = []
    for job in jobs:
        key = f"{job.model}/seed{job.seed}"
        entry = record.get("runs", {}).get(key)
        status = run_status(job.out, job.log, entry, states.get(key, ""), False)
        if status in ("queued", "running"):
            where = f"as job {entry['job_id']}" if entry else f"(pid {lock_holder(job.out)})"
            echo(f"skip   {job.model} seed{job.seed}: still {status} {where}; not submitted twice")
        elif status == "unknown":
            raise ReproError(
                f"cannot tell whether job {entry['job_id'] if entry else '?'} ({key}) is still "
                "queued or running (sacct gave no state); check `squeue`, cancel it or wait for "
                "it, then run this command again"
            )
        else:
            todo.append(job)
    return todo


def sbatch_script(folder: Path, params: SbatchParams, count: int) -> str:
    """The sbatch script submitit writes for an array of ``count`` tasks with ``params``."""
    import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit"])
    command += " " + shlex.quote(str(folder))
    map_count = count if count > 1 else None
    return _make_sbatch_string(command=command, folder=folder, map_count=map_count, **params)


def make_executor(folder: Path, options: SlurmOptions, params: SbatchParams) -> Any:
    """submitit's SlurmExecutor with ``params``; with ``cluster="local"`` its LocalExecutor,
    which runs the same jobs here as processes (USR2 at the time limit, requeue by restart)."""
    submitit = import_submitit()
    if options.cluster == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
        local = {"timeout_min": params["time"], "signal_delay_s": SIGNAL_DELAY_S}
        executor.update_parameters(**local, gpus_per_node=params.get("gpus_per_node", 0))
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
    executor.update_parameters(**params)
    return executor


def dry_run(out: Path, params: SbatchParams, commands: dict, echo: Callable[[str], None]) -> None:
    """Print the sbatch script and each task's command; submit and write nothing."""
    echo(f"# dry run: nothing submitted; {len(commands)} run(s) would be one job array")
    echo(sbatch_script((out / SUBMITIT_DIR).resolve(), params, max(len(commands), 1)))
    for i, ((model, seed), cmd) in enumerate(commands.items()):
        echo(f"# task {i}: {model} seed{seed} -> {seed_dir(out, model, seed)}")
        echo(shlex.join(cmd))


def sbatch_refusal(exc: Exception, options: SlurmOptions) -> ReproError:
    """sbatch's refusal of the array as one line: its own error, and what to change."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "error" in line.lower()), "")
    said = said or (lines[-1] if lines else type(exc).__name__)
    hint = "check --partition, --mem, --cpus-per-run, --account, --qos and --constraint"
    if "gres" in said.lower() and options.gpus_per_run:
        hint = "this partition has no GPUs to give: add --gpus-per-run 0 for CPU runs"
    return ReproError(f"sbatch refused the job array, nothing was submitted: {said} ({hint})")


def submit_array(
    folder: Path, options: SlurmOptions, params: SbatchParams, trainings: list
) -> list:
    """Submit ``trainings`` (TrainJobs) as one array; on a refusal, one ReproError and no file
    of the attempt left in ``folder`` (submitit writes its pickles before it calls sbatch)."""
    before = set(folder.rglob("*")) if folder.is_dir() else set()
    executor = make_executor(folder, options, params)
    try:
        # submitit prints sbatch's error too: this one line says it
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():
            jobs = [executor.submit(t) for t in trainings]
    except Exception as exc:  # submitit's FailedJobError, or any other failure to submit
        made = sorted(set(folder.rglob("*")) - before if folder.is_dir() else (), reverse=True)
        for path in made:  # the deepest first: files, then the folders they were in
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        if not before and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise sbatch_refusal(exc, options) from None
    return jobs


def submit(
    out: Path,
    options: SlurmOptions,
    params: SbatchParams,
    commands: Mapping[tuple[str, int], list[str]],
    todo: list[runner.Job],
) -> list[Any]:
    """Submit the runs as one job array and record the job ids (atomically) in slurm_jobs.json."""
    folder = (out / SUBMITIT_DIR).resolve()
    trainings = [TrainJob(commands[(j.model, j.seed)], str(j.log.resolve())) for j in todo]
    jobs = submit_array(folder, options, params, trainings)
    record = read_record(out) or JobRecord(runs={})
    record["cluster"], record["folder"] = options.cluster, str(folder)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs = record.setdefault("runs", {})
    for j, sj in zip(todo, jobs):
        runs[f"{j.model}/seed{j.seed}"] = JobEntry(
            job_id=str(sj.job_id), log=str(j.log), submitted=stamp
        )
    write_json(out / RECORD, record)
    return jobs


def prepare(options: SlurmOptions) -> None:
    """The Slurm launcher's own checks, before the matrix is planned: its options, submitit,
    and (unless a dry run or submitit's local executor) sbatch and srun here."""
    options.check()
    import_submitit()
    if not options.dry_run and options.cluster == "slurm":
        check_slurm_here()


def submit_plan(
    plan: runner.MatrixPlan, options: SlurmOptions, echo: Callable[[str], None] = print
) -> list[Any]:
    """The Slurm launcher: submit every run of ``plan`` that is neither finished nor queued or
    running as one job array (or, with ``dry_run``, print what would be submitted); the submitted
    submitit jobs. ``plan.out`` must be absolute (the jobs may start in another folder)."""
    out = plan.out
    params = options.sbatch_parameters(f"repro-{plan.experiment}-{plan.preset.name}")
    if options.dry_run:
        todo = to_submit(plan.todo(echo), read_record(out), echo)
        dry_run(
            out, params, {(j.model, j.seed): plan.commands[(j.model, j.seed)] for j in todo}, echo
        )
        return []
    with plan.lock():  # one driver at a time submits for this matrix
        todo = to_submit(plan.todo(echo), read_record(out), echo)
        if not todo:
            echo(f"nothing to submit; see `repro reproduce --status {out}`")
            return []
        submitted = submit(out, options, params, plan.commands, todo)  # summary.json after it
        fields = {"launcher": "slurm", "status": "submitted", "failed": []}
        plan.write_summary(fields | {"wall_seconds": None, "parallel": None})
    ids = ", ".join(str(j.job_id) for j in submitted)
    echo(f"submitted {len(submitted)} run(s) as one job array ({ids}); each writes its log under")
    echo(f"{out / 'logs'}. Follow it with: repro reproduce --status {out}")
    echo("Run this command again to resubmit what did not finish (never a queued or running run).")
    return submitted


def plan_for_slurm(
    experiment: str,
    models: tuple[str, ...],
    preset: Preset,
    out: Path,
    seeds: int,
    data_root: Path,
    options: SlurmOptions,
    device: str | None = None,
    force: bool = False,
    amp: str | None = None,
) -> runner.MatrixPlan:
    """:func:`prepare`, then the matrix's plan for Slurm: its folder absolute, each run's
    ``--threads`` its ``--cpus-per-run`` on the CPU, a GPU of its own otherwise."""
    prepare(options)
    return runner.plan_matrix(
        experiment,
        models,
        preset,
        Path(out).resolve(),  # the jobs may start in another working directory
        seeds,
        data_root,
        device=device,
        force=force,
        amp=amp,
        threads=options.cpus_per_run if not options.gpus_per_run else None,
        gpu_per_run=options.gpus_per_run > 0,
    )


def submit_matrix(
    experiment: str,
    models: tuple[str, ...],
    preset: Preset,
    out: Path,
    seeds: int,
    data_root: Path,
    options: SlurmOptions,
    device: str | None = None,
    force: bool = False,
    echo: Callable[[str], None] = print,
    amp: str | None = None,
) -> list[Any]:
    """The Slurm launcher in one call: :func:`plan_for_slurm`, then :func:`submit_plan`."""
    plan = plan_for_slurm(
        experiment, models, preset, out, seeds, data_root, options, device, force, amp
    )
    return submit_plan(plan, options, echo)
