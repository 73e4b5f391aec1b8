"""Data-parallel training under torchrun: 2 CPU processes (gloo) share each global batch."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
from trainer_helpers import torchrun_train

from repro.store import read_metrics
from repro.train.checkpoint import load_checkpoint


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_two_process_gloo_run_completes_with_identical_weights_on_both_ranks(
    synthetic_cifar, tmp_path
):
    out = tmp_path / "ddp"
    torchrun_train(synthetic_cifar, out, "--iterations", "12", "--milestones", "6")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["per_rank_batch_size"] == 8 and cfg["batch_size"] == 16
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")] == [6, 12]
    final = load_checkpoint(out / "final.pt")
    assert final["ddp"] == {"world_size": 2, "max_rank_difference": 0.0}
    assert final["iteration"] == 12 and final["stop_reason"] == "schedule"
    assert not any(k.startswith("module.") for k in final["model"])  # the unwrapped model
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",  # rank 0's writer lock (empty of holders once the run ended)
        "best.pt",
        "config.json",
        "final.pt",
        "last.pt",
        "metrics.jsonl",
    ]


def test_batch_not_divisible_by_the_process_count_is_refused(
    monkeypatch, synthetic_cifar, tmp_path
):
    """Checked before the process group is needed: per-rank batch = batch / world size."""
    from repro.errors import ReproError
    from repro.train import ddp
    from repro.train import trainer as trainer_mod
    from repro.train.trainer import TrainConfig

    monkeypatch.setattr(trainer_mod.ddp, "init", lambda info, device: None)
    monkeypatch.setattr(trainer_mod.ddp, "from_env", lambda: ddp.DistInfo(0, 3, 0))
    config = TrainConfig(
        model="resnet20",
        out=tmp_path / "x",
        data_root=synthetic_cifar,
        device="cpu",
        overrides={"batch_size": 16},
        quiet=True,
    )
    with pytest.raises(ReproError, match="not divisible by the 3 processes"):
        trainer_mod.train(config)
