"""The torchrun path on the CPU (gloo), beyond tests/test_ddp.py's one complete run: a 2-process
run continued under torchrun is the uninterrupted one, bit for bit; resuming it with another
world size is refused in one line naming both sizes, since without --sync-bn the world size sets
the BatchNorm batch (batch / world size images per process) and would change the run mid-way."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from cli_helpers import one_clear_line, run_repro
from trainer_helpers import metrics_without_timing, torchrun_train

from repro.errors import ReproError
from repro.run_config import parse_run_config
from repro.train import ddp
from repro.train.checkpoint import load_checkpoint

needs_gloo = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="no gloo"
)
STEPS = ["--iterations", "12", "--milestones", "6", "--deterministic"]


def torchrun(data: Path, out: Path, *extra: str) -> None:
    """A 2-process CPU run of the test's schedule, continued with ``extra``."""
    torchrun_train(data, out, *STEPS, *extra)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from data_helpers import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("torchrun") / "data")


@pytest.fixture(scope="module")
def half(data: Path, tmp_path_factory) -> Path:
    """A 2-process run stopped at iteration 6 of 12 (--max-steps 6: final.pt and last.pt)."""
    out = tmp_path_factory.mktemp("half") / "run"
    torchrun(data, out, "--max-steps", "6")
    return out


@pytest.mark.slow
@needs_gloo
def test_a_two_process_run_continued_under_torchrun_is_the_uninterrupted_run(
    data: Path, half: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    torchrun(data, reference)
    out = tmp_path / "continued"
    shutil.copytree(half, out)
    torchrun(data, out, "--max-steps", "12")  # resumes from last.pt at iteration 6
    assert [r["iteration"] for r in metrics_without_timing(out)] == [6, 12]
    assert metrics_without_timing(out) == metrics_without_timing(reference)
    mine, theirs = load_checkpoint(out / "final.pt"), load_checkpoint(reference / "final.pt")
    assert mine["ddp"] == theirs["ddp"] == {"world_size": 2, "max_rank_difference": 0.0}
    for name, tensor in theirs["model"].items():
        assert torch.equal(mine["model"][name], tensor), name


@pytest.mark.slow
@needs_gloo
def test_resuming_a_two_process_run_in_one_process_is_refused_naming_both_world_sizes(
    half: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    shutil.copytree(half, out)
    files = lambda: {p.name: p.read_bytes() for p in out.glob("*.*") if p.name != ".lock"}  # noqa: E731
    before = files()
    argv = ["train", "--out", str(out), "--resume", "--max-steps", "12", "--quiet"]
    line = one_clear_line(*run_repro(capsys, *argv))
    assert "was trained with world size 2 and this is world size 1" in line
    assert "over 16 images at a time instead of 8" in line
    assert "torchrun with 2 processes" in line
    assert files() == before  # nothing in the run changed (the lock holds the last pid)


def test_a_one_process_run_is_refused_by_two_processes_and_allowed_where_bn_is_the_same() -> None:
    recorded = parse_run_config({"world_size": 1, "batch_size": 128, "sync_bn": False})
    with pytest.raises(ReproError, match="world size 1 and this is world size 2.*`repro train`"):
        ddp.check_world_size(recorded, ddp.DistInfo(0, 2, 0), Path("run"))
    assert ddp.check_world_size(recorded, ddp.DistInfo(), Path("run")) is None
    assert (
        ddp.check_world_size(parse_run_config({"batch_size": 128}), ddp.DistInfo(), Path("run"))
        is None
    )  # old
    sync = dataclasses.replace(recorded, sync_bn=True)
    note = ddp.check_world_size(sync, ddp.DistInfo(0, 4, 0), Path("r"))
    assert note is not None and "over the whole batch of 128 either way" in note
    chunks = parse_run_config({"world_size": 2, "batch_size": 128, "bn_batch": 64})  # 2 GPUs
    note = ddp.check_world_size(chunks, ddp.DistInfo(), Path("r"))
    assert note is not None and "over chunks of 64 images either way" in note
    with pytest.raises(ReproError, match="over 32 images at a time instead of 64"):
        ddp.check_world_size(chunks, ddp.DistInfo(0, 4, 0), Path("r"))
