"""A SIGKILL of `repro reproduce` cannot be caught, yet it leaves no orphan training: on Linux each
trainer asked the kernel for one SIGTERM when its parent dies (PR_SET_PDEATHSIG), so it saves
last.pt and exits, and re-running the command resumes every run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_helpers import write_cifar10

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

MODELS = ("resnet20", "plain20")

DRIVER = f"""
import dataclasses, sys
from pathlib import Path
from repro.experiments import PRESETS
from repro.reproduce.runner import reproduce
preset = dataclasses.replace(PRESETS["smoke"], max_steps=40, eval_every=2)
out, data = Path(sys.argv[1]), Path(sys.argv[2])
echo = lambda line: print(line, flush=True)
raise SystemExit(reproduce("core", {MODELS!r}, preset, out, 1, data, device="cpu",
                           parallel=2, echo=echo))
"""

# A parent that starts one child the way the matrix driver does, then waits (to be SIGKILLed).
PARENT = """
import subprocess, sys, time
from repro.reproduce.runner import pdeathsig_setter
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True,
                         preexec_fn=pdeathsig_setter())
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import signal, sys, time
def handle(signum, frame):
    open(FLAG, "w").write(signal.Signals(signum).name)
    sys.exit(143)
signal.signal(signal.SIGTERM, handle)
print("ready", flush=True)
time.sleep(600)
"""


def exited(pid: int) -> bool:
    """No such process, or a zombie (an orphan's exit status waits for whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if exited(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.mark.slow
def test_a_child_gets_one_sigterm_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    flag = tmp_path / "signal"
    child = CHILD.replace("FLAG", repr(str(flag)))
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, child], stdout=subprocess.PIPE, text=True
    )
    pid = int(parent.stdout.readline())
    assert parent.stdout.readline() == "ready\n"  # the child's SIGTERM handler is in place
    parent.kill()  # SIGKILL: nothing in the parent runs
    parent.communicate()
    try:
        assert gone(pid, timeout=10), "the child outlived its SIGKILLed parent"
        assert flag.read_text() == "SIGTERM"
    finally:
        if not gone(pid, timeout=0):
            os.kill(pid, signal.SIGKILL)


def wait_until_training(out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = [out / m / "seed0" / "metrics.jsonl" for m in MODELS]
        if all(f.is_file() and f.read_text().strip() for f in files):
            return
        time.sleep(0.1)
    raise AssertionError(f"the trainings did not start within {timeout} s")


@pytest.mark.slow
def test_sigkill_of_the_driver_stops_each_trainer_resumably(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data", per_batch=26)  # 130 images: one batch of 128
    out = tmp_path / "run"
    argv = [sys.executable, "-c", DRIVER, str(out), str(data)]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_training(out)
    finally:
        driver.kill()  # kill -9: the driver forwards nothing
    text, _ = driver.communicate(timeout=60)
    pids = [int(p) for p in re.findall(r"\(pid (\d+),", text)]
    assert len(pids) == 2
    assert all(gone(p) for p in pids), "a trainer outlived the driver"
    for model in MODELS:
        run = out / model / "seed0"
        assert (run / "last.pt").is_file() and not (run / "final.pt").exists()
        log = (out / "logs" / f"{model}-seed0.log").read_text()
        assert log.count("received SIGTERM") == 1 and "stopped by SIGTERM at iteration" in log

    again = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout[-3000:]
    for model in MODELS:
        log = (out / "logs" / f"{model}-seed0.log").read_text()
        assert re.search(r"resuming from last\.pt at iteration [1-9]", log)
        assert (out / model / "seed0" / "final.pt").is_file()
