"""Shared helpers of the trainer tests: tiny runs through the CLI, in-process or as a subprocess."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from repro.cli import main
from repro.store import read_metrics
from repro.train.metrics import TIMING_KEYS

ROOT = Path(__file__).resolve().parents[1]

# A depth-8 CIFAR ResNet on the 100-image synthetic set: ~10 ms a step on one thread.
TINY = [
    "--model",
    "resnet_cifar",
    "--depth",
    "8",
    "--recipe",
    "paper-val",
    "--batch-size",
    "16",
    "--iterations",
    "36",
    "--milestones",
    "18",
    "27",
    "--eval-every",
    "6",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", *TINY, "--data-root", str(data), "--out", str(out), *extra]


def run_cli(args: list[str]) -> int:
    """``repro ARGS`` in this process; returns the exit status."""
    return main(args)


def cli_subprocess(args: list[str], **kw) -> subprocess.Popen:
    """``python -m repro ARGS`` as a child process (stdout/stderr piped, text)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "repro", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def metrics_without_timing(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING_KEYS}
        for r in read_metrics(run_dir / "metrics.jsonl")
    ]


def torchrun_train(data: Path, out: Path, *args: str, nproc: int = 2) -> None:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m repro train TINY
    ARGS`` on the CPU (one thread per worker), to completion; fails with its stderr's tail."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(nproc), "-m", "repro", "train", *TINY, *args]
    cmd += ["--data-root", str(data), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    pipe = subprocess.PIPE
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=pipe, stderr=pipe, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


# Bit-equality holds on one machine only: PyTorch promises no identical floats across CPUs
# (oneDNN and ATen pick kernels by instruction set; ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY on
# one machine move the fixture run's losses by up to 4e-6 relative). A resume defect moves them by
# 4e-2 (momentum buffers lost) or 6e-2 (loader generator lost): losses are compared to 1e-4.
CROSS_MACHINE_LOSS_RTOL = 1e-4


def assert_matches_other_machine(
    actual: list[dict], expected: list[dict], split_sizes: dict[str, int], images: int = 1
) -> None:
    """Metrics from a fixture written on another machine: the schedule (keys, iterations, epochs,
    lr) exactly, losses to CROSS_MACHINE_LOSS_RTOL, errors to ``images`` misclassified images of
    that split (an argmax flip of an image whose logits tie within rounding)."""
    assert [sorted(r) for r in actual] == [sorted(r) for r in expected]
    for got, want in zip(actual, expected, strict=True):
        for key, ref in want.items():
            value, where = got[key], f"iteration {want.get('iteration')}: {key}"
            if key.endswith("_loss") and ref is not None:
                assert math.isclose(value, ref, rel_tol=CROSS_MACHINE_LOSS_RTOL), (
                    where,
                    value,
                    ref,
                )
            elif key.endswith("_error") and ref is not None:
                slack = 100.0 * images / split_sizes[key.removesuffix("_error")]
                assert abs(value - ref) <= slack + 1e-9, (where, value, ref)
            else:
                assert value == ref, (where, value, ref)
