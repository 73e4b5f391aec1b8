"""`repro reproduce --launcher slurm` against a real Slurm cluster (slurmctld, slurmd, slurmdbd):
the matrix submitted, followed by ``--status`` and reported; a task cancelled while running and
one while pending, then the same command again finishes the matrix; ``scontrol requeue`` of a
running task; a real time limit (USR2, requeue, resume); a second submission refused; bad
partition, memory and GPU requests in one line. A resumed run ends with the weights and metrics
of an uninterrupted one. Run by ``nox -s slurm``, which stands the cluster up
(scripts/slurm-local/) and sets REPRO_SLURM_TESTS=1; skipped anywhere else."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import one_clear_line, reproduce_args, run_repro
from data_helpers import write_cifar10
from trainer_helpers import metrics_without_timing

from repro.experiments import PRESETS
from repro.reproduce import runner
from repro.reproduce.slurm import RECORD, SUBMITIT_DIR, SlurmOptions, matrix_status, submit_matrix
from repro.store import log_path, seed_dir
from repro.train.checkpoint import load_checkpoint

pytest.importorskip("submitit")


def cluster_answers() -> bool:
    if not os.environ.get("REPRO_SLURM_TESTS") or shutil.which("sbatch") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "UP" in ping.stdout


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not cluster_answers(),
        reason="needs a Slurm test cluster: run `nox -s slurm` (REPRO_SLURM_TESTS=1, sbatch, "
        "a slurmctld that answers)",
    ),
]

OPTIONS = SlurmOptions(time="5", gpus_per_run=0, cpus_per_run=1)
# 30 steps, an evaluation (and last.pt) every 5, bit-exact on the CPU
LONG = dataclasses.replace(
    PRESETS["smoke"], max_steps=30, eval_every=5, train_flags=("--deterministic",)
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("slurm") / "data", per_batch=26)  # 130 images


def wait_until(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def slurm(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def queue_state(job: str) -> str:
    """squeue's state of one job or array task ('' once it left the queue)."""
    rows = dict(line.split("|") for line in slurm("squeue", "-h", "-r", "-o", "%i|%T").split())
    return rows.get(job, "")


def trainer_pid(run: Path) -> int:
    """The PID of the `repro train` process writing to ``run`` (read from /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile
            continue
        if "train" in argv and "--out" in argv and argv[argv.index("--out") + 1] == str(run):
            return int(cmdline.parent.name)
    raise AssertionError(f"no `repro train --out {run}` process")


def signalled_or_gone(pid: int) -> bool:
    """Has the held process ``pid`` a SIGTERM waiting (from /proc/PID/status), or has it gone on
    and ended (slurmstepd may send SIGCONT with the signals it delivers)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines())
    bit = 1 << (signal.SIGTERM - 1)
    return any(int(fields[key].strip(), 16) & bit for key in ("SigPnd", "ShdPnd"))


def job_ids(out: Path) -> dict[str, str]:
    return {k: r["job_id"] for k, r in json.loads((out / RECORD).read_text())["runs"].items()}


def reference_run(data: Path, tmp: Path, model: str, seed: int, preset=LONG) -> subprocess.Popen:
    """The same `repro train` command, run here and never stopped (started in the background)."""
    job = runner.Job(model, seed, tmp / f"ref-{model}-{seed}", tmp / f"ref-{model}-{seed}.log")
    cmd = runner.train_command(preset, job, data, "cpu", 1)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def assert_same_as_reference(run: Path, reference: Path) -> None:
    """Bit for bit: the metrics (less timing) and every final weight."""
    assert metrics_without_timing(run) == metrics_without_timing(reference)
    mine, theirs = load_checkpoint(run / "final.pt"), load_checkpoint(reference / "final.pt")
    assert mine["iteration"] == theirs["iteration"]
    for name, tensor in theirs["model"].items():
        assert torch.equal(mine["model"][name], tensor), name


def all_done(out: Path) -> bool:
    """Every run done, and each job's last word written (final.pt comes just before it)."""
    statuses = matrix_status(out, echo=lambda _: None, warn=lambda _: None)
    logs = (out / "logs").glob("*.log")
    return set(statuses.values()) == {"done"} and all(
        "exited with 0" in log.read_text().splitlines()[-1] for log in logs
    )


def test_matrix_with_a_running_and_a_pending_task_cancelled_finishes_on_the_same_command(
    data: Path, tmp_path: Path, capsys
) -> None:
    out, models = tmp_path / "run", ("resnet20", "plain20")
    options = dataclasses.replace(OPTIONS, array_parallelism=1)  # one at a time: 3 pend
    reference = reference_run(data, tmp_path, "resnet20", 0)
    submit = lambda echo: submit_matrix(  # noqa: E731 -- the same command, each time
        "core", models, LONG, out, 2, data, options, device="cpu", echo=echo
    )
    assert len(submit(lambda _: None)) == 4
    jobs = job_ids(out)
    first, pending = jobs["resnet20/seed0"], jobs["plain20/seed1"]
    lines: list[str] = []  # all four queued or running: the same command submits nothing
    assert submit(lines.append) == [] and "nothing to submit" in lines[-1]
    assert sum("not submitted twice" in line for line in lines) == 4

    assert queue_state(pending) == "PENDING"
    slurm("scancel", pending)  # cancelled while pending: no sacct row of its own
    wait_until("a checkpoint", lambda: (seed_dir(out, "resnet20", 0) / "last.pt").is_file())
    slurm("scancel", first)  # cancelled while running
    wait_until("the cancelled task to end", lambda: queue_state(first) == "")
    statuses = matrix_status(out, echo=lambda _: None)
    assert statuses["resnet20/seed0"] == "interrupted"
    assert statuses["plain20/seed1"] == "cancelled"  # neither unknown nor failed

    lines = []
    assert len(submit(lines.append)) == 2  # the two cancelled ones, never the two others
    assert sum("not submitted twice" in line for line in lines) == 2
    wait_until("the matrix", lambda: all_done(out), timeout=420)

    capsys.readouterr()
    rc, text, _ = run_repro(capsys, "reproduce", "--status", str(out))
    assert rc == 0 and "4 done" in text.splitlines()[0]
    log = log_path(out, "resnet20", 0).read_text()
    assert "repro train exited with 143" in log and "resuming from last.pt" in log
    assert reference.wait(timeout=300) == 0
    assert_same_as_reference(seed_dir(out, "resnet20", 0), tmp_path / "ref-resnet20-0")
    rc, _, err = run_repro(capsys, "report", str(out), "--out", str(tmp_path / "report"))
    # a report is written (2 would be none); its verdicts on 3-step smoke nets are not this
    # test's subject: since issue 22 the exit status follows them (1 a check failed, 3 not assessed)
    assert rc in (0, 1, 3), err
    assert "resnet20" in (tmp_path / "report" / "report.md").read_text()


def test_scontrol_requeue_of_a_running_task_resumes_to_the_uninterrupted_result(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    reference = reference_run(data, tmp_path, "resnet20", 0)
    (job,) = submit_matrix("core", ("resnet20",), LONG, out, 1, data, OPTIONS, "cpu")
    run, log = seed_dir(out, "resnet20", 0), log_path(out, "resnet20", 0)
    wait_until("a checkpoint", lambda: (run / "last.pt").is_file())
    slurm("scontrol", "requeue", str(job.job_id))
    wait_until("the requeued run", lambda: all_done(out), timeout=300)

    text = log.read_text()
    assert text.count("): started `repro train`") == 2  # the requeued job ran it again
    assert re.search(r"repro train exited with 143\n|the last attempt left no exit status", text)
    assert "resuming from last.pt" in text and "exited with 0" in text.splitlines()[-1]
    assert reference.wait(timeout=300) == 0
    assert_same_as_reference(run, tmp_path / "ref-resnet20-0")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--partition", "nosuch", "--gpus-per-run", "0"], "invalid partition"),
        (["--mem", "999G", "--gpus-per-run", "0"], "node configuration is not available"),
        (["--gpus-per-run", "1"], "--gpus-per-run 0"),  # a GPU per run where there is none
    ],
)
def test_a_request_the_cluster_refuses_is_one_line_and_nothing_recorded(
    data: Path, tmp_path: Path, capsys, flags: list[str], says: str
) -> None:
    out = tmp_path / "run"
    argv = reproduce_args(data, out, "--launcher", "slurm", "--time", "5", *flags)
    line = one_clear_line(*run_repro(capsys, *argv))
    assert "error: sbatch refused the job array, nothing was submitted" in line
    assert says.lower() in line.lower()
    assert not (out / RECORD).exists() and not (out / "summary.json").exists()
    assert not (out / SUBMITIT_DIR).exists() or not any((out / SUBMITIT_DIR).rglob("*"))


def test_on_a_cluster_without_gpus_the_default_asks_for_none(data: Path, tmp_path: Path, capsys):
    argv = reproduce_args(data, tmp_path / "run", "--launcher", "slurm", "--time", "5")
    rc, text, err = run_repro(capsys, *argv, "--slurm-dry-run")
    assert rc == 0, err
    assert "the default partition has no GPUs" in text and "--gpus-per-node" not in text


def test_a_time_limit_reached_stops_checkpoints_requeues_and_resumes(
    data: Path, tmp_path: Path
) -> None:
    out, preset = tmp_path / "run", dataclasses.replace(LONG, max_steps=60)
    reference = reference_run(data, tmp_path, "resnet20", 0, preset)
    (job,) = submit_matrix("core", ("resnet20",), preset, out, 1, data, OPTIONS, "cpu")
    run, log = seed_dir(out, "resnet20", 0), log_path(out, "resnet20", 0)
    wait_until("a checkpoint", lambda: (run / "last.pt").is_file())
    # Slurm's signal timer may fire up to a minute late: the trainer is held (SIGSTOP) so that it
    # cannot finish first; it goes on as soon as the job's handler has sent it SIGTERM.
    trainer = trainer_pid(run)
    os.kill(trainer, signal.SIGSTOP)
    try:
        # the limit, lowered so that USR2 (SIGNAL_DELAY_S = 120 s before it) is due now
        elapsed = int(slurm("squeue", "-h", "-j", str(job.job_id), "-o", "%M").split(":")[-2])
        slurm("scontrol", "update", f"jobid={job.job_id}", f"TimeLimit={elapsed + 2}")
        wait_until("SIGTERM to the trainer", lambda: signalled_or_gone(trainer), timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(trainer, signal.SIGCONT)
    wait_until("the stop at the limit", lambda: "requeued" in log.read_text(), timeout=120)
    slurm("scontrol", "update", f"jobid={job.job_id}", "TimeLimit=10")  # the resumed attempt
    wait_until("the resumed run", lambda: all_done(out), timeout=400)

    text = log.read_text()
    assert "received SIGTERM" in text  # from the job's checkpoint handler, on USR2
    assert "preempted or timed out; repro train exited with 143; requeued" in text
    assert "resuming from last.pt" in text and text.count("): started `repro train`") == 2
    assert reference.wait(timeout=300) == 0
    assert_same_as_reference(run, tmp_path / "ref-resnet20-0")
