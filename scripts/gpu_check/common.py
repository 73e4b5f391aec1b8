"""What every stage shares: the stage names and files, the sizes (an H100 or the CPU rehearsal),
the time box, the stage records in OUT_DIR, and running a child process within a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.fileio import read_json, write_json

STAGES = ("env", "ladder", "memory", "training", "bench")
TITLES = {
    "env": "environment and `pytest -m gpu`",
    "ladder": "speed ladder (ResNet-56, batch 128)",
    "memory": "peak memory (ResNet-1202, batch 128)",
    "training": "time-boxed training of the core four nets",
    "bench": "GPU benchmarks (pytest-benchmark)",
}
FILES = {
    "env": "env.json",
    "ladder": "ladder.json",
    "memory": "memory.json",
    "training": "training.json",
    "bench": "benchmarks.json",
}
SUMMARY, LOG, JUNIT = "summary.md", "log.txt", "pytest-gpu.xml"
MAX_FILES, MAX_DEPTH, MAX_BYTES = 8, 2, 16 * 2**20  # what comes back from the GPU machine
FAIL_ENV = "GPU_CHECK_FAIL"  # STAGE[:hang],... : make a stage fail or overrun on purpose


@dataclass(frozen=True)
class Sizes:
    """Every size that differs between the H100 check and the CPU rehearsal."""

    device: str
    ladder_model: str  # "ResNet-56" (rehearsal: a depth-8 ResNet)
    ladder_kwargs: dict[str, Any]
    batch: int
    tiled_images: int  # the ladder's training set: the data present, tiled to this many
    window_s: float  # timed training per rung (at most one epoch of the tiled set)
    eval_batch: int
    memory_model: str  # "ResNet-1202"
    memory_kwargs: dict[str, Any]
    train_models: tuple[str, ...]  # the core four
    train_flags: tuple[str, ...]
    max_steps: int  # per training run
    eval_every: int
    parallel: int  # `repro reproduce --parallel K` on the one device
    compile_probe_s: float
    compile_rung_s: float  # at most this per compile rung of the ladder (and what is left)
    pytest_reserve_s: float  # no test starts in a stage's last this many seconds
    margin_s: float  # kept free at the end of each stage's budget
    bench_args: tuple[str, ...] = field(default_factory=tuple)


H100 = Sizes(
    device="cuda",
    ladder_model="resnet56",
    ladder_kwargs={},
    batch=128,
    tiled_images=50_000,
    window_s=6.0,
    eval_batch=1000,
    memory_model="resnet1202",
    memory_kwargs={},
    train_models=("plain20", "plain56", "resnet20", "resnet56"),
    train_flags=(),
    max_steps=600,
    eval_every=30,  # a record before the mini set's first short batch (iteration 40) recompiles
    parallel=4,
    compile_probe_s=25.0,
    compile_rung_s=600.0,  # whatever is left of the stage
    pytest_reserve_s=20.0,  # a compiling GPU test takes tens of seconds
    margin_s=10.0,
    # the compiling cases reuse the inductor cache of stages 2 and 4; ResNet-1202 is stage 3's,
    # ResNet-110 would compile cold for over a minute
    bench_args=("-m", "gpu and not slow", "-k", "not resnet1202 and not resnet110"),
)
REHEARSAL = Sizes(
    device="cpu",
    ladder_model="resnet_cifar",
    ladder_kwargs={"depth": 8},
    batch=32,
    tiled_images=1024,
    window_s=1.0,
    eval_batch=256,
    memory_model="resnet_cifar",
    memory_kwargs={"depth": 8},
    train_models=("plain_cifar", "resnet_cifar"),
    train_flags=("--depth", "8", "--threads", "1"),
    max_steps=6,
    eval_every=2,
    parallel=2,
    compile_probe_s=5.0,  # it cannot finish on the CPU: the timeout is what is rehearsed
    compile_rung_s=4.0,  # ditto: compiling on the CPU takes minutes
    pytest_reserve_s=2.0,  # the gpu tests skip at once on the CPU
    margin_s=5.0,
    bench_args=("-m", "not slow and not gpu", "-k", "test_bench_eval and cpu-resnet20-fp32-nchw"),
)


@dataclass
class Context:
    """One stage's run: where to write, the data, the sizes, and its time box."""

    out: Path
    work: Path
    data_root: str | None
    rehearse: bool
    deadline: float  # time.time() at which the harness stops the stage (its start + budget)

    @property
    def sizes(self) -> Sizes:
        return REHEARSAL if self.rehearse else H100

    def remaining(self) -> float:
        """Seconds left before this stage's budget, less the safety margin."""
        return self.deadline - self.sizes.margin_s - time.time()


def stage_path(out: Path, stage: str, /) -> Path:
    return out / FILES[stage]


def read_stage(out: Path, stage: str, /) -> dict[str, Any]:
    """The stage's JSON as written so far ({} when absent or unreadable)."""
    path = stage_path(out, stage)
    try:
        return read_json(path) if path.is_file() else {}
    except Exception:  # a torn or damaged file is reported by the summary as missing figures
        return {}


def update_stage(out: Path, stage: str, /, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the stage's JSON and write it atomically (readable at every moment)."""
    record = read_stage(out, stage)
    record.update(fields)
    write_json(stage_path(out, stage), record)
    return record


def set_status(out: Path, stage: str, /, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the stage's status record (``record["stage"]``)."""
    record = read_stage(out, stage)
    status = {"name": stage, "number": STAGES.index(stage) + 1, "title": TITLES[stage]}
    status.update(record.get("stage") or {})
    status.update(fields)
    if status.get("error"):  # one line: it is a cell of summary.md's stage table
        status["error"] = " ".join(str(status["error"]).split())[:400]
    return update_stage(out, stage, stage=status)


def no_figures(what: str, records: dict[str, dict[str, Any]]) -> None:
    """Fail the stage (RuntimeError) when none of its ``records`` got a figure."""
    if not any(r.get("status") == "ok" for r in records.values()):
        errors = [f"{k}: {r.get('error') or r.get('status')}" for k, r in records.items()]
        raise RuntimeError(f"no {what} measured; " + ("; ".join(errors) or "none ran")[:300])


def forced_failure(stage: str, budget: float) -> None:
    """``GPU_CHECK_FAIL=STAGE`` raises in that stage; ``STAGE:hang`` sleeps past its budget."""
    for item in os.environ.get(FAIL_ENV, "").split(","):
        name, _, how = item.strip().partition(":")
        if name == stage and how == "hang":
            time.sleep(budget + 60)
        elif name == stage:
            raise RuntimeError(f"failed on purpose ({FAIL_ENV}={item.strip()})")


def pytest_env(ctx: Context, record: Path | None = None) -> dict[str, str]:
    """The environment of a stage's pytest run: the data, and the time-box plugin's settings (no
    test starts in the stage's last ``pytest_reserve_s``; see pytest_timebox)."""
    from scripts.gpu_check.pytest_timebox import DEADLINE_ENV, RECORD_ENV

    left = ctx.remaining()
    env = {DEADLINE_ENV: str(time.time() + left - min(ctx.sizes.pytest_reserve_s, left / 3))}
    if ctx.data_root:
        env["REPRO_MINI_ROOT"] = ctx.data_root  # tests/conftest.py's mini_root
    if record is not None:
        env[RECORD_ENV] = str(record)
    return env


PYTEST_PLUGIN = ("-p", "scripts.gpu_check.pytest_timebox", "-p", "no:cacheprovider")


def run_child(
    cmd: list[str], seconds: float, env: dict[str, str] | None = None, grace: float = 2.0
) -> int | None:
    """Run ``cmd`` (output to ours, i.e. log.txt) for at most ``seconds``; on overrun send it
    SIGINT (pytest still writes its JUnit and benchmark files), then SIGKILL ``grace`` seconds
    later. The exit status, or None when it overran."""
    if seconds <= 1:
        return None
    sys.stdout.flush()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return None
    finally:
        if proc.poll() is None:  # we were interrupted ourselves: take the child along
            proc.kill()
            proc.wait()
