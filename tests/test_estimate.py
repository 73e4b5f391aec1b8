"""`repro estimate`: timed steps on this device, projected over the recipe's whole schedule."""

from __future__ import annotations

import json
import shlex

import pytest

from repro.cli import main

# A depth-8 CIFAR ResNet on the CPU at batch 8: a few milliseconds per step.
TINY = "estimate --model resnet_cifar --depth 8 --device cpu --batch-size 8 --threads 1"


def test_estimate_projects_the_whole_schedule_from_timed_steps(capsys):
    code = main(
        shlex.split(
            "estimate --model resnet_cifar --depth 8 --recipe common --device cpu --steps 2 --warmup-steps 1 --batch-size 16 --threads 1 --json"
        )
    )
    assert code == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["model"] == "resnet_cifar" and r["device"] == "cpu" and r["batch_size"] == 16
    assert r["total_iterations"] == 200 * 3125  # 50k images / 16 = 3125 iterations per epoch
    assert r["evaluations"] == 201
    assert r["step_seconds"] > 0 and r["images_per_s"] == pytest.approx(16 / r["step_seconds"])
    assert r["projected_train_seconds"] == pytest.approx(r["total_iterations"] * r["step_seconds"])
    assert r["projected_eval_seconds"] == pytest.approx(201 * 10_000 / r["eval_images_per_s"])
    assert r["projected_seconds"] == pytest.approx(
        r["projected_train_seconds"] + r["projected_eval_seconds"]
    )
    if r["peak_memory_bytes"] is None:
        assert r["peak_memory_kind"].startswith("n/a")
    else:
        assert r["peak_memory_bytes"] > 0 and "lower bound" in r["peak_memory_kind"]


def test_estimate_prints_one_line_per_model(capsys):
    code = main(
        shlex.split(
            "estimate --model resnet_cifar --model plain_cifar --depth 8 --device cpu --steps 1 --warmup-steps 0 --batch-size 8 --threads 1"
        )
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "ms/step" in lines[0] and "plain_cifar" in lines[1]
    assert "64000 iterations" in lines[0]  # the paper recipe by default


def test_estimate_of_an_unknown_model_is_one_clear_error(capsys):
    assert main(shlex.split("estimate --model resnet21 --device cpu")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'resnet21'" in err[0]


def test_estimate_times_each_model_with_and_without_activation_checkpointing(capsys):
    code = main(f"{TINY} --steps 1 --warmup-steps 0 --activation-checkpointing both --json".split())
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["activation_checkpointing"] for r in rows] == [True, False]
    assert all(r["model"] == "resnet_cifar" and r["step_seconds"] > 0 for r in rows)


def test_estimate_compiles_as_the_trainer_does_and_never_times_the_compiling_step(
    capsys, monkeypatch
):
    import torch

    calls = []

    def fake_compile(model, mode=None):  # eager stand-in that records each call
        calls.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    code = main(
        f"{TINY} --steps 1 --warmup-steps 0 --compile --compile-mode max-autotune --json".split()
    )
    assert code == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert calls == ["max-autotune"] and r["compile"] == "max-autotune"

    code = main(f"{TINY} --steps 1 --json".split())
    assert code == 0 and calls == ["max-autotune"]  # auto: no compile on the CPU
    assert json.loads(capsys.readouterr().out)[0]["compile"] is None


def test_estimate_falls_back_to_eager_when_compiling_fails(capsys, monkeypatch):
    import torch

    class Broken(torch.nn.Module):  # like torch.compile's wrapper: holds the model, fails on use
        def __init__(self, module, mode=None):
            super().__init__()
            self.inner = module

        def forward(self, x):
            raise RuntimeError("simulated inductor failure")

    monkeypatch.setattr(torch, "compile", Broken)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        code = main(f"{TINY} --steps 1 --compile --json".split())
    assert code == 0
    assert json.loads(capsys.readouterr().out)[0]["step_seconds"] > 0
