"""The Slurm launcher's jobs, run for real through submitit's local executor (no cluster here):
a smoke matrix submitted, finished and shown done; a job preempted mid-run (the USR2 that Slurm
sends before the time limit, delivered to the job as submitit's local controller does) saves,
requeues, resumes and ends with the metrics and weights of an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from data_helpers import write_cifar10
from trainer_helpers import metrics_without_timing

from repro.cli import main
from repro.experiments import EXPERIMENTS, PRESETS, get_preset
from repro.reproduce import runner
from repro.reproduce.slurm import RECORD, SlurmOptions, matrix_status, submit_matrix
from repro.store import log_path, seed_dir
from repro.train.checkpoint import load_checkpoint

pytest.importorskip("submitit")

LOCAL = SlurmOptions(time="10", gpus_per_run=0, cpus_per_run=1, cluster="local")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("slurm") / "data", per_batch=26)  # 130 images


def wait_all(jobs: list, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not all(j.done() for j in jobs):
        assert time.monotonic() < deadline, "the jobs did not finish in time"
        time.sleep(0.5)


@pytest.mark.slow
def test_smoke_matrix_through_submitits_local_executor_finishes_and_shows_done(
    data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    preset, models = get_preset("smoke"), EXPERIMENTS["core"]
    jobs = submit_matrix("core", models, preset, out, 1, data, LOCAL, device="cpu")
    assert len(jobs) == 4
    wait_all(jobs)
    for model in models:
        run = seed_dir(out, model, 0)
        assert (run / "final.pt").is_file() and (run / "config.json").is_file()
        assert "repro train exited with 0" in log_path(out, model, 0).read_text()
    record = json.loads((out / RECORD).read_text())
    assert sorted(record["runs"]) == sorted(f"{m}/seed0" for m in models)
    assert json.loads((out / "summary.json").read_text())["launcher"] == "slurm"

    capsys.readouterr()
    assert main(["reproduce", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 done" in text.splitlines()[0]
    assert sum(" done " in line and "3/3" in line for line in text.splitlines()) == 4

    lines: list[str] = []  # the same command again submits nothing
    assert (
        submit_matrix("core", models, preset, out, 1, data, LOCAL, "cpu", echo=lines.append) == []
    )
    assert sum(line.startswith("skip") for line in lines) == 4 and "nothing to submit" in lines[-1]


# resnet20, 30 steps, an evaluation (and last.pt) every 5, bit-exact on the CPU
LONG = dataclasses.replace(
    PRESETS["smoke"], max_steps=30, eval_every=5, train_flags=("--deterministic",)
)


def job_pid(log: Path, timeout: float = 120) -> int:
    """The pid of the submitit job process (not the trainer), from the launcher's line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(r"\(pid (\d+)\): started", log.read_text() if log.is_file() else "")
        if found:
            return int(found[-1])
        time.sleep(0.1)
    raise AssertionError("the job did not start")


def wait_for_evaluation(run: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert time.monotonic() < deadline, "no evaluation in time"
        time.sleep(0.1)


@pytest.mark.slow
def test_preempted_slurm_job_resumes_to_the_same_metrics(data: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    job = runner.Job("resnet20", 0, reference, tmp_path / "reference.log")
    cmd = runner.train_command(LONG, job, data, "cpu", 1)  # the same command, never stopped
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)

    out = tmp_path / "run"
    jobs = submit_matrix("core", ("resnet20",), LONG, out, 1, data, LOCAL, device="cpu")
    log, run = log_path(out, "resnet20", 0), seed_dir(out, "resnet20", 0)
    wait_for_evaluation(run)  # mid-run: past iteration 5, far from 30
    os.kill(job_pid(log), signal.SIGUSR2)  # as the local controller (and Slurm) signal a job
    wait_all(jobs)

    text = log.read_text()
    assert text.count("received SIGTERM") == 1  # one SIGTERM, a clean stop
    stopped = int(re.search(r"stopped by SIGTERM at iteration (\d+)", text).group(1))
    assert 5 <= stopped < 30
    assert "preempted or timed out; repro train exited with 143; requeued" in text
    assert f"resuming from last.pt at iteration {stopped}" in text
    assert text.count("): started `repro train`") == 2  # the requeued job ran it again
    assert "repro train exited with 0" in text.splitlines()[-1]

    assert metrics_without_timing(run) == metrics_without_timing(reference)
    mine, theirs = load_checkpoint(run / "final.pt"), load_checkpoint(reference / "final.pt")
    assert mine["iteration"] == theirs["iteration"] == 30
    for name, tensor in theirs["model"].items():
        assert torch.equal(mine["model"][name], tensor), name
    assert matrix_status(out, echo=lambda _: None) == {"resnet20/seed0": "done"}
