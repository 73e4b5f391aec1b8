"""Exact resume: runs killed (SIGKILL) or stopped (SIGTERM/SIGINT) at arbitrary steps and resumed
write the same metrics.jsonl (timing fields aside) and the same final weights as one
uninterrupted run, on the CPU in deterministic mode."""

from __future__ import annotations

import random
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from trainer_helpers import cli_subprocess, metrics_without_timing, run_cli, tiny_args

from repro.train.checkpoint import load_checkpoint

# 72 iterations; last.pt every 4 (not aligned with the evaluations every 6); a warm-up whose
# state (window sums, on/off) must survive the resume too.
EXACT = [
    "--iterations",
    "72",
    "--milestones",
    "36",
    "54",
    "--deterministic",
    "--checkpoint-every",
    "4",
    "--warmup",
    "on",
    "--warmup-check-every",
    "5",
    "--warmup-until-error",
    "89",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from data_helpers import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert run_cli(tiny_args(data, out, *EXACT)) == 0
    warm = load_checkpoint(out / "final.pt")["scheduler"]["warmup"]
    assert 0 < warm["ended_at"] < 72  # the resumed runs must carry the warm-up state across
    return out


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _wait_for_new_checkpoint(proc: subprocess.Popen, last: Path, timeout: float = 120) -> bool:
    """Wait until last.pt is (re)written by ``proc``; False if the process ended first."""
    before, t0 = _mtime(last), time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if _mtime(last) != before:
            return True
        time.sleep(0.01)
    return False


def _assert_same_run(out: Path, reference: Path) -> None:
    assert metrics_without_timing(out) == metrics_without_timing(reference)
    a, b = load_checkpoint(out / "final.pt"), load_checkpoint(reference / "final.pt")
    assert a["iteration"] == b["iteration"] == 72
    for k, v in b["model"].items():
        assert torch.equal(a["model"][k], v), k


def _sigkill_and_resume(data: Path, out: Path, reference: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    args = tiny_args(data, out, *EXACT)
    done = 0
    while done < kills:
        proc = cli_subprocess(args)
        if _wait_for_new_checkpoint(proc, out / "last.pt"):
            time.sleep(rng.uniform(0.0, 0.4))  # anywhere: mid-step, mid-evaluation, mid-save
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL
        done += 1
    assert done >= 1, "the run finished before it could be killed even once"
    assert run_cli(args) == 0  # the same command again: resumes from last.pt
    _assert_same_run(out, reference)


@pytest.mark.slow  # a subprocess killed mid-run: ~9 s on 2 cores, run by `nox -s slow`
def test_resume_after_sigkill_gives_identical_metrics_and_weights(data, reference, tmp_path):
    _sigkill_and_resume(data, tmp_path / "run", reference, kills=1, seed=0)


@pytest.mark.slow
def test_resume_after_repeated_sigkills_at_random_steps_gives_identical_metrics(
    data, reference, tmp_path
):
    _sigkill_and_resume(data, tmp_path / "run", reference, kills=4, seed=1)


@pytest.mark.slow  # a subprocess stopped by SIGTERM: ~9 s on 2 cores
def test_sigterm_writes_last_pt_prints_the_resume_command_and_resumes_exactly(
    data, reference, tmp_path
):
    out = tmp_path / "run"
    proc = cli_subprocess(tiny_args(data, out, *EXACT))
    assert _wait_for_new_checkpoint(proc, out / "last.pt")
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped = load_checkpoint(out / "last.pt")["iteration"]
    assert 0 < stopped < 72 and not (out / "final.pt").exists()
    assert f"stopped by SIGTERM at iteration {stopped}" in err
    command = err.strip().splitlines()[-1].strip()
    assert "--resume" in command and str(out) in command
    argv = shlex.split(command)
    assert argv[1:3] == ["-m", "repro"]
    assert run_cli(argv[3:]) == 0  # the printed command, run in this process (saves an import)
    _assert_same_run(out, reference)


@pytest.mark.slow
def test_sigint_writes_last_pt_and_exits_130(data, tmp_path):
    out = tmp_path / "run"
    proc = cli_subprocess(tiny_args(data, out, *EXACT))
    assert _wait_for_new_checkpoint(proc, out / "last.pt")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "repro train --out" in err and "--resume" in err
    assert load_checkpoint(out / "last.pt")["iteration"] > 0
