"""SIGTERM / SIGINT to the `repro reproduce` driver mid-run: each running trainer gets one SIGTERM,
saves its step and exits; no new run starts; summary.json says "interrupted"; the driver prints
the command that continues and exits 143 / 130; a re-run finishes every run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from data_helpers import write_cifar10

from repro.experiments import get_preset
from repro.reproduce import runner
from repro.reproduce.runner import Job, reproduce

MODELS = ("resnet56", "plain56", "resnet20")  # two run at once; the third must not start

# The driver in its own process, on a tiny preset: 20 steps, an evaluation (and last.pt) every 2.
DRIVER = f"""
import dataclasses, sys
from pathlib import Path
from repro.experiments import PRESETS
from repro.reproduce.runner import reproduce
preset = dataclasses.replace(PRESETS["smoke"], max_steps=20, eval_every=2)
out, data = Path(sys.argv[1]), Path(sys.argv[2])
echo = lambda line: print(line, flush=True)
raise SystemExit(reproduce("core", {MODELS!r}, preset, out, 1, data, device="cpu",
                           parallel=2, echo=echo))
"""


def start_driver(out: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(out), str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def wait_until_training(out: Path, models: tuple[str, ...], timeout: float = 120.0) -> None:
    """Until each of ``models`` has written an evaluation (its trainer is in its loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = [out / m / "seed0" / "metrics.jsonl" for m in models]
        if all(f.is_file() and f.read_text().strip() for f in files):
            return
        time.sleep(0.1)
    raise AssertionError(f"the trainings did not start within {timeout} s")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_driver_stops_the_matrix_resumably(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    data = write_cifar10(tmp_path / "data", per_batch=26)  # 130 images: one batch of 128
    out = tmp_path / "run"
    driver = start_driver(out, data)
    wait_until_training(out, MODELS[:2])
    os.killpg(driver.pid, sig)  # SIGINT to the whole group, as Ctrl-C in a terminal sends it
    text, _ = driver.communicate(timeout=120)
    assert driver.returncode == code, text

    pids = [int(p) for p in re.findall(r"\(pid (\d+),", text)]
    assert len(pids) == 2 and all(gone(p) for p in pids)
    assert not (out / MODELS[2]).exists()  # no new run started
    for model in MODELS[:2]:
        run = out / model / "seed0"
        assert (run / "last.pt").is_file() and not (run / "final.pt").exists()
        log = (out / "logs" / f"{model}-seed0.log").read_text()
        assert "stopped by SIGTERM at iteration" in log  # one SIGTERM, a clean stop
        assert log.count("received SIG") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["failed"] == []
    assert summary["interrupted"] == sorted(f"{m}/seed0" for m in MODELS[:2])
    assert "repro reproduce --experiment core --preset smoke" in summary["continue_command"]
    assert summary["continue_command"] in text and "FAILED" not in text

    if sig == signal.SIGTERM:  # the re-run resumes both and trains the third
        again = start_driver(out, data)
        text, _ = again.communicate(timeout=300)
        assert again.returncode == 0, text
        for model in MODELS:
            assert (out / model / "seed0" / "final.pt").is_file()
        assert json.loads((out / "summary.json").read_text())["status"] == "finished"
        for model in MODELS[:2]:
            log = (out / "logs" / f"{model}-seed0.log").read_text()
            assert re.search(r"resuming from last\.pt at iteration [1-9]", log)


# A stand-in trainer: notes every SIGTERM/SIGINT it gets, "saves" and exits 143 on the first.
FAKE_TRAINER = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
def handle(signum, frame):
    with (out / "signals").open("a") as f:
        f.write(signal.Signals(signum).name + chr(10))
signal.signal(signal.SIGTERM, handle)
signal.signal(signal.SIGINT, handle)
(out / "started").write_text(str(os.getpid()))
while not (out / "signals").exists():
    time.sleep(0.05)
time.sleep(0.3)  # finishing the step
sys.exit(143)
"""


def fake_command(preset, job: Job, data_root, device, threads) -> list[str]:
    return [sys.executable, "-S", "-c", FAKE_TRAINER, str(job.out)]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_each_child_gets_one_sigterm_and_nothing_new_starts(
    synthetic_cifar: Path, tmp_path: Path, monkeypatch, sig: signal.Signals, code: int
) -> None:
    monkeypatch.setattr(runner, "train_command", fake_command)
    out, models, lines = tmp_path / "run", ("plain20", "plain56", "resnet20"), []

    def interrupt_when_started() -> None:
        while not all((out / m / "seed0" / "started").exists() for m in models[:2]):
            time.sleep(0.05)
        os.kill(os.getpid(), sig)
        time.sleep(0.1)
        os.kill(os.getpid(), sig)  # a second signal to the driver is not forwarded

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    args = ("core", models, get_preset("smoke"), out, 1, synthetic_cifar)
    assert reproduce(*args, parallel=2, echo=lines.append) == code
    for model in models[:2]:
        assert (out / model / "seed0" / "signals").read_text() == "SIGTERM\n"
    assert not (out / models[2]).exists()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["failed"]) == ("interrupted", [])
    assert summary["interrupted"] == ["plain20/seed0", "plain56/seed0"]
    command = summary["continue_command"]
    assert command.startswith("repro reproduce --experiment core --preset smoke --out ")
    assert command.endswith("--parallel 2") and command in lines[-1]
    assert sum("interrupted (exit 143); resumable" in x for x in lines) == 2
