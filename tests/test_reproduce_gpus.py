"""`repro reproduce --gpus`: each child sees its GPU through CUDA_VISIBLE_DEVICES, the placement
is recorded, and bad input is one line. No real GPU: torch.cuda is monkeypatched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from data_helpers import write_cifar10
from trainer_helpers import run_cli, tiny_args

from repro.cli import main
from repro.errors import ReproError
from repro.experiments import EXPERIMENTS, get_preset
from repro.reproduce import runner
from repro.reproduce.runner import Job, child_env, gpu_slots, reproduce, select_gpus

ENV_TRAINER = """
import json, os, sys, time
from pathlib import Path
out, t0 = Path(sys.argv[1]), time.time()
time.sleep(0.3)  # long enough that all slots are busy at once
env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "REPRO_PLACEMENT")}
out.mkdir(parents=True, exist_ok=True)
(out / "env.json").write_text(json.dumps({**env, "t0": t0, "t1": time.time()}))
"""


def env_train_command(preset, job: Job, data_root, device, threads) -> list[str]:
    return [sys.executable, "-S", "-c", ENV_TRAINER, str(job.out)]


@pytest.fixture
def four_gpus(monkeypatch):
    """Pretend this machine has 4 CUDA devices (the driver only asks how many)."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    monkeypatch.setattr(runner, "environment", lambda *a: {})  # would name the GPU
    monkeypatch.setattr(runner, "train_command", env_train_command)


def child_envs(out: Path) -> dict[str, dict[str, str]]:
    return {
        p.parent.parent.name: json.loads(p.read_text())
        for p in sorted(out.glob("*/seed0/env.json"))
    }


def test_two_runs_per_gpu_on_two_gpus_each_child_sees_its_gpu(
    four_gpus, synthetic_cifar: Path, tmp_path: Path
) -> None:
    out, lines = tmp_path / "run", []
    args = ("core", EXPERIMENTS["core"], get_preset("smoke"), out, 1, synthetic_cifar)
    assert reproduce(*args, gpus="1,3", per_gpu=2, echo=lines.append) == 0
    envs = child_envs(out)
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in envs.values()) == ["1", "1", "3", "3"]
    for e in envs.values():
        assert e["REPRO_PLACEMENT"].startswith(f"gpu {e['CUDA_VISIBLE_DEVICES']}; ")
        assert "--gpus 1,3 --per-gpu 2" in e["REPRO_PLACEMENT"]
    assert sum(" on GPU " in x for x in lines) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gpus"] == [1, 3] and summary["parallel"] == 4


def test_all_gpus_one_each_never_shares_a_gpu(
    four_gpus, synthetic_cifar: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ("fig6", EXPERIMENTS["fig6"][:6], get_preset("smoke"), out, 1, synthetic_cifar)
    assert reproduce(*args, gpus="all", echo=lambda _: None) == 0
    envs = child_envs(out)
    assert len(envs) == 6
    assert {e["CUDA_VISIBLE_DEVICES"] for e in envs.values()} == {"0", "1", "2", "3"}
    for gpu in "0123":  # the runs on one GPU ran one after the other
        spans = sorted(
            (e["t0"], e["t1"]) for e in envs.values() if e["CUDA_VISIBLE_DEVICES"] == gpu
        )
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert gpu_slots([0, 1, 2, 3], 1, 99) == [0, 1, 2, 3]
    assert gpu_slots([0, 2], 2, 1) == [0, 2, 0, 2] and gpu_slots(None, 1, 3) == [None] * 3


@pytest.mark.parametrize(
    ("spec", "device", "message"),
    [
        ("4", None, r"no GPU 4 here; this machine has 4 CUDA device\(s\), 0-3"),
        ("0,-1", None, "no GPU -1 here"),
        ("0,x", None, "is not a list of GPU indices"),
        ("1,1", None, "names a GPU twice"),
        ("0", "cpu", "drop --device cpu"),
    ],
)
def test_bad_gpu_lists_are_one_line(four_gpus, spec: str, device, message: str) -> None:
    with pytest.raises(ReproError, match=message):
        select_gpus(spec, device)


def test_gpus_without_cuda_is_one_line_before_any_work(
    monkeypatch, synthetic_cifar: Path, tmp_path: Path, capsys
) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    argv = ["reproduce", "--experiment", "core", "--preset", "smoke", "--gpus", "0"]
    argv += ["--data-root", str(synthetic_cifar), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device is available here" in err
    assert not (tmp_path / "run").exists()
    assert main([*argv, "--parallel", "2"]) == 2
    assert "drop --parallel" in capsys.readouterr().err
    with pytest.raises(ReproError, match="--per-gpu needs --gpus"):
        reproduce("core", ("resnet20",), get_preset("smoke"), tmp_path, 1, tmp_path, per_gpu=2)


def test_the_trainer_records_its_placement(tmp_path: Path, monkeypatch) -> None:
    data = write_cifar10(tmp_path / "data")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU run: the variable is still recorded
    monkeypatch.setenv("REPRO_PLACEMENT", "gpu 2; 4 at once over --gpus all")
    assert run_cli(tiny_args(data, tmp_path / "run", "--max-steps", "1")) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["placement"] == "gpu 2; 4 at once over --gpus all"
    assert cfg["cuda_visible_devices"] == ""


def test_a_gpu_index_maps_through_the_drivers_own_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # e.g. what Slurm allocated
    env = child_env(2, "note")
    assert env is not None and env["CUDA_VISIBLE_DEVICES"] == "6"
    assert env["REPRO_PLACEMENT"] == "gpu 2; note"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert child_env(1, "n")["CUDA_VISIBLE_DEVICES"] == "1"  # type: ignore[index]
    assert child_env(None, "n") is None
