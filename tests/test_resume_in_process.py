"""Exact resume, in the unit suite (issue 21, item 3): a run cut after 3 steps and resumed holds,
right after loading, the optimizer state (SGD momentum buffers) its last.pt saved, and its 4th
step gives the weights and buffers of an uninterrupted run bit for bit. Not restoring the
optimizer state on resume fails here, not only in the slow kill -9 tests."""

from __future__ import annotations

import copy

import torch
from trainer_helpers import run_cli, tiny_args

from repro.train import trainer as trainer_mod
from repro.train.checkpoint import load_checkpoint

COMMON = ["--deterministic", "--checkpoint-every", "3", "--lr", "0.05"]


def _buffers(optimizer_state: dict) -> dict[int, torch.Tensor]:
    return {k: v["momentum_buffer"] for k, v in optimizer_state["state"].items()}


def _assert_equal_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what} {key}"


def test_a_resumed_run_restores_momentum_and_takes_the_uninterrupted_next_step(
    synthetic_cifar, tmp_path, monkeypatch
):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert run_cli(tiny_args(synthetic_cifar, straight, *COMMON, "--max-steps", "4")) == 0
    assert run_cli(tiny_args(synthetic_cifar, cut, *COMMON, "--max-steps", "3")) == 0
    saved = load_checkpoint(cut / "last.pt")
    assert saved["iteration"] == 3 and _buffers(saved["optimizer"])  # momentum is under way

    loaded: list[dict] = []
    original = trainer_mod.Trainer.load_state_dict

    def spy(self, state):
        original(self, state)
        loaded.append(copy.deepcopy(self.parts.optimizer.state_dict()))

    monkeypatch.setattr(trainer_mod.Trainer, "load_state_dict", spy)
    assert run_cli(tiny_args(synthetic_cifar, cut, *COMMON, "--max-steps", "4")) == 0
    assert len(loaded) == 1, "the second command did not resume from last.pt"
    _assert_equal_tensors(
        _buffers(loaded[0]), _buffers(saved["optimizer"]), "momentum after resume"
    )

    a, b = load_checkpoint(cut / "last.pt"), load_checkpoint(straight / "last.pt")
    assert a["iteration"] == b["iteration"] == 4
    _assert_equal_tensors(a["model"], b["model"], "weights after the next step")
    _assert_equal_tensors(
        _buffers(a["optimizer"]), _buffers(b["optimizer"]), "momentum after the next step"
    )
