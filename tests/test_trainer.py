"""The training loop and its run folder: learning, artifacts, warm-up, divergence, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trainer_helpers import run_cli, tiny_args

import repro.train.components as components_mod
import repro.train.trainer as trainer_mod
from repro.errors import ReproError
from repro.store import read_metrics
from repro.train.checkpoint import load_checkpoint, save_checkpoint
from repro.train.metrics import METRIC_KEYS, TIMING_KEYS
from repro.train.trainer import TrainConfig, train

CONFIG_KEYS = {
    "model",
    "model_kwargs",
    "recipe",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "epochs",
    "iterations",
    "milestones",
    "milestone_unit",
    "gamma",
    "warmup",
    "warmup_lr",
    "warmup_until_error",
    "split",
    "val_fraction",
    "early_stopping_patience",
    "total_iterations",
    "max_steps",
    "eval_every",
    "seed",
    "deterministic",
    "device",
    "amp",
    "channels_last",
    "compile",
    "mean",
    "std",
    "data_root",
    "data_official",
    "data_counts",
    "environment",
    "best_by",
}
TRAINING_CKPT_KEYS = {
    "format",
    "model_name",
    "model_kwargs",
    "model",
    "config",
    "iteration",
    "optimizer",
    "scheduler",
    "loader",
    "rng",
    "metrics_state",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """One complete tiny run (36 iterations, evaluation every 6): (data root, run folder)."""
    from data_helpers import write_cifar10

    base = tmp_path_factory.mktemp("tiny")
    data = write_cifar10(base / "data")
    out = base / "run"
    assert run_cli(tiny_args(data, out, "--seed", "3")) == 0
    return data, out


def test_training_loss_falls_over_50_steps_on_the_mini_set(mini_root, tmp_path):
    out = tmp_path / "run"
    code = run_cli(
        [
            "train",
            "--model",
            "resnet20",
            "--recipe",
            "common",
            "--batch-size",
            "32",
            "--max-steps",
            "50",
            "--eval-every",
            "25",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--data-root",
            str(mini_root),
            "--out",
            str(out),
            "--quiet",
            "--eval-batch-size",
            "500",
        ]
    )
    assert code == 0
    first, last = read_metrics(out / "metrics.jsonl")
    assert last["train_loss"] < first["train_loss"] - 0.05
    assert last["train_loss"] < 2.2  # below chance level ln(10) = 2.30
    assert last["test_error"] < 85.0


def test_run_folder_holds_the_documented_artifacts_and_keys(tiny_run):
    _, out = tiny_run
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg) >= CONFIG_KEYS
    assert cfg["total_iterations"] == 36 and cfg["max_steps"] is None and cfg["seed"] == 3
    assert cfg["best_by"] == "val_error" and cfg["data_counts"] == {
        "train": 90,
        "val": 10,
        "test": 20,
    }
    assert {"torch", "python", "git_commit", "device_name"} <= set(cfg["environment"])
    records = read_metrics(out / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [6, 12, 18, 24, 30, 36]
    for r in records:
        assert list(r) == list(METRIC_KEYS)
        assert 0.0 <= r["train_error"] <= 100.0 and 0.0 <= r["test_error"] <= 100.0
    assert [r["lr"] for r in records] == [0.1, 0.1, 0.1, 0.01, 0.001, 0.001]  # drops at 18, 27
    assert records[-1]["epoch"] == pytest.approx(36 / 6)  # 90 images / 16 = 6 iterations/epoch
    for name in ("last.pt", "final.pt"):
        ck = load_checkpoint(out / name)
        assert set(ck) >= TRAINING_CKPT_KEYS and ck["iteration"] == 36
        assert ck["config"] == cfg
    assert load_checkpoint(out / "final.pt")["stop_reason"] == "schedule"
    best = load_checkpoint(out / "best.pt")
    assert best["best_by"] == "val_error"
    assert best["best_value"] == min(r["val_error"] for r in records)


def test_rerunning_a_finished_run_trains_nothing(tiny_run, capsys):
    data, out = tiny_run
    before = (out / "final.pt").stat().st_mtime_ns
    assert run_cli(tiny_args(data, out, "--seed", "3")) == 0
    assert (out / "final.pt").stat().st_mtime_ns == before


def test_max_steps_cuts_the_run_and_still_evaluates_and_writes_final(synthetic_cifar, tmp_path):
    out = tmp_path / "smoke"
    assert run_cli(tiny_args(synthetic_cifar, out, "--max-steps", "4")) == 0
    records = read_metrics(out / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [4]
    assert json.loads((out / "config.json").read_text())["max_steps"] == 4
    assert load_checkpoint(out / "final.pt")["stop_reason"] == "max_steps"


def test_warmup_runs_at_0_01_until_training_error_drops_below_the_threshold(
    synthetic_cifar, tmp_path
):
    """Warm-up forced on; a threshold of 101% is met at the first check (iteration 5)."""
    out = tmp_path / "warm"
    extra = [
        "--warmup",
        "on",
        "--warmup-check-every",
        "5",
        "--warmup-until-error",
        "101",
        "--eval-every",
        "5",
        "--max-steps",
        "10",
    ]
    assert run_cli(tiny_args(synthetic_cifar, out, *extra)) == 0
    lrs = [r["lr"] for r in read_metrics(out / "metrics.jsonl")]
    assert lrs == [0.01, 0.1]
    warm = load_checkpoint(out / "final.pt")["scheduler"]["warmup"]
    assert warm == {"enabled": True, "active": False, "ended_at": 5}


def test_warmup_stays_on_while_training_error_is_above_the_threshold(synthetic_cifar, tmp_path):
    out = tmp_path / "warm0"
    extra = [
        "--warmup",
        "on",
        "--warmup-check-every",
        "5",
        "--warmup-until-error",
        "0",
        "--eval-every",
        "5",
        "--max-steps",
        "10",
    ]
    assert run_cli(tiny_args(synthetic_cifar, out, *extra)) == 0
    assert [r["lr"] for r in read_metrics(out / "metrics.jsonl")] == [0.01, 0.01]


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    synthetic_cifar, tmp_path, monkeypatch
):
    real_make_step = components_mod.make_step

    def poisoned_make_step(*args, **kwargs):
        step, calls = real_make_step(*args, **kwargs), [0]

        def poisoned(x, y, scale):
            calls[0] += 1
            loss, errors = step(x, y, scale)
            return (loss * float("nan") if calls[0] >= 9 else loss), errors

        return poisoned

    monkeypatch.setattr(components_mod, "make_step", poisoned_make_step)
    out = tmp_path / "nan"
    config = TrainConfig(
        model="resnet_cifar",
        model_kwargs={"depth": 8},
        out=out,
        data_root=synthetic_cifar,
        device="cpu",
        threads=1,
        quiet=True,
        eval_every=6,
        checkpoint_every=3,
        overrides={"batch_size": 16, "iterations": 36},
    )
    with pytest.raises(ReproError, match="non-finite loss") as info:
        train(config)
    assert "last.pt (iteration 6)" in str(info.value)
    assert load_checkpoint(out / "last.pt")["iteration"] == 6
    assert not (out / "final.pt").exists()
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")] == [6]


def test_huge_learning_rate_exits_nonzero_with_a_divergence_message(
    synthetic_cifar, tmp_path, capsys
):
    out = tmp_path / "lr"
    code = run_cli(tiny_args(synthetic_cifar, out, "--lr", "1e12", "--log-every", "2"))
    assert code == 2
    assert "training diverged: non-finite loss" in capsys.readouterr().err
    assert not (out / "final.pt").exists()


def test_unwritable_out_folder_is_one_clear_error(synthetic_cifar, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run_cli(tiny_args(synthetic_cifar, blocker / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to --out" in err[0]


def test_out_folder_with_a_different_config_is_refused_before_training(tiny_run, capsys):
    data, out = tiny_run
    before = (out / "metrics.jsonl").read_text()
    assert run_cli(tiny_args(data, out, "--seed", "3", "--lr", "0.05")) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "lr: 0.1 -> 0.05" in err
    assert (out / "metrics.jsonl").read_text() == before


def _partial_run(data: Path, out: Path) -> None:
    assert run_cli(tiny_args(data, out, "--max-steps", "6", "--checkpoint-every", "6")) == 0
    (out / "final.pt").unlink()  # as if killed after last.pt


def test_truncated_checkpoint_is_refused_before_training(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "trunc"
    _partial_run(synthetic_cifar, out)
    raw = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(raw[: len(raw) // 2])
    metrics_before = (out / "metrics.jsonl").read_text()
    assert run_cli(tiny_args(synthetic_cifar, out)) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "truncated" in err
    assert (out / "metrics.jsonl").read_text() == metrics_before


def test_checkpoint_of_another_model_is_refused(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "other"
    _partial_run(synthetic_cifar, out)
    ck = load_checkpoint(out / "last.pt")
    ck["model_name"], ck["model_kwargs"] = "resnet20", {}
    save_checkpoint(ck, out / "last.pt")
    assert run_cli(tiny_args(synthetic_cifar, out)) == 2
    assert "holds a checkpoint of resnet20" in capsys.readouterr().err


def test_resume_flag_without_a_run_is_refused(tmp_path, capsys):
    assert run_cli(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_cuda_request_without_cuda_is_refused(synthetic_cifar, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    args = tiny_args(synthetic_cifar, tmp_path / "cuda")
    args[args.index("--device") + 1] = "cuda"
    assert run_cli(args) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_early_stopping_ends_the_run_after_patience_evaluations(synthetic_cifar, tmp_path):
    out = tmp_path / "es"
    extra = ["--early-stopping-patience", "1", "--eval-every", "2", "--lr", "1e-9"]
    assert run_cli(tiny_args(synthetic_cifar, out, *extra)) == 0
    records = read_metrics(out / "metrics.jsonl")
    final = load_checkpoint(out / "final.pt")
    assert final["stop_reason"] == "early_stopping" and final["iteration"] < 36
    assert records[-1]["val_error"] >= min(r["val_error"] for r in records[:-1])


class _FailingCompiled(torch.nn.Module):
    """What torch.compile returns when compilation breaks: fails on the first call."""

    def __init__(self, module: torch.nn.Module, mode: str | None = None) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x):
        raise RuntimeError("simulated inductor failure")


def test_compile_failure_warns_once_and_trains_eagerly_with_identical_results(
    synthetic_cifar, tmp_path, monkeypatch
):
    common = ["--max-steps", "12", "--deterministic"]
    assert run_cli(tiny_args(synthetic_cifar, tmp_path / "eager", *common)) == 0
    monkeypatch.setattr(trainer_mod.torch, "compile", _FailingCompiled)
    with pytest.warns(UserWarning, match="torch.compile failed") as record:
        assert run_cli(tiny_args(synthetic_cifar, tmp_path / "comp", *common, "--compile")) == 0
    assert sum("torch.compile failed" in str(w.message) for w in record) == 1
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "comp" / "metrics.jsonl")) == strip(
        read_metrics(tmp_path / "eager" / "metrics.jsonl")
    )


def test_channels_last_and_bf16_autocast_train_on_the_cpu(synthetic_cifar, tmp_path):
    out = tmp_path / "cl"
    extra = ["--max-steps", "6", "--channels-last", "--amp", "bf16"]
    assert run_cli(tiny_args(synthetic_cifar, out, *extra)) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["channels_last"] is True and cfg["amp"] == "bf16"
    (record,) = read_metrics(out / "metrics.jsonl")
    assert record["iteration"] == 6 and record["train_loss"] == record["train_loss"]  # not NaN


def test_tensorboard_flag_without_the_package_warns_and_trains(synthetic_cifar, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    out = tmp_path / "tb"
    with pytest.warns(UserWarning, match="tensorboard package is not installed"):
        assert run_cli(tiny_args(synthetic_cifar, out, "--max-steps", "2", "--tensorboard")) == 0
    assert (out / "final.pt").exists()


def test_without_a_validation_split_best_is_by_test_error_and_labelled_so(
    synthetic_cifar, tmp_path
):
    out = tmp_path / "common"
    args = tiny_args(
        synthetic_cifar,
        out,
        "--recipe",
        "common",
        "--milestone-unit",
        "iteration",
        "--max-steps",
        "6",
    )
    assert run_cli(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["best_by"] == "test_error" and "biased" in cfg["best_by_note"]
    assert cfg["data_counts"] == {"train": 100, "val": 0, "test": 20}
    (record,) = read_metrics(out / "metrics.jsonl")
    assert record["val_loss"] is None and record["val_error"] is None
    assert load_checkpoint(out / "best.pt")["best_by"] == "test_error"


def test_resume_of_a_run_with_another_model_flag_is_refused(tiny_run, capsys):
    _, out = tiny_run
    assert run_cli(["train", "--out", str(out), "--resume", "--model", "resnet56"]) == 2
    assert "trains resnet_cifar, not resnet56" in capsys.readouterr().err
