"""Checkpoints and flags that say nonsense (issue 21, items 2 and 4): every reader refuses them in
one line naming the file, the field and what was expected, before anything is built or run."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from cli_helpers import one_clear_line, run_repro
from trainer_helpers import tiny_args

from repro.models import build_model
from repro.train.checkpoint import (
    MEAN_IMAGE_SHAPE,
    load_checkpoint,
    mean_image_problem,
    save_checkpoint,
)


def write_checkpoint(path: Path, **changes) -> Path:
    """A sound per-pixel-mean checkpoint of a depth-8 net, with ``changes`` applied."""
    torch.manual_seed(0)
    state = {
        "model_name": "resnet_cifar",
        "model_kwargs": {"depth": 8},
        "model": build_model("resnet_cifar", depth=8).state_dict(),
        "iteration": 6,
        "config": {"model": "resnet_cifar", "model_kwargs": {"depth": 8}, "seed": 0,
                   "normalize": "per-pixel-mean"},
        "mean_image": torch.full(MEAN_IMAGE_SHAPE, 0.5),
    }  # fmt: skip
    state.update(changes)
    save_checkpoint(state, path)
    return path


BAD = {
    "huge_num_classes": (
        {"model_kwargs": {"depth": 8, "num_classes": 10**13}},
        "'model_kwargs' num_classes is 10000000000000, expected an integer from 1 to 100000",
    ),
    "meanimg_8x8": (
        {"mean_image": torch.zeros(3, 8, 8)},
        "'mean_image' is [3, 8, 8], expected a float tensor [3, 32, 32]",
    ),
    "meanimg_1x1": ({"mean_image": torch.zeros(3, 1, 1)}, "'mean_image' is [3, 1, 1]"),
    "meanimg_nan": (
        {"mean_image": torch.full(MEAN_IMAGE_SHAPE, float("nan"))},
        "'mean_image' holds NaN, infinite or out-of-range values",
    ),
    "meanimg_missing": ({"mean_image": None}, "'mean_image' is NoneType"),
    "config_string": ({"config": "x"}, "'config' is a str, expected an object"),
    "config_seed_string": ({"config": {"model": "m", "seed": "0"}}, "'config': 'seed' is str"),
    "config_std_zero": (
        {"config": {"model": "m", "mean": [0.5] * 3, "std": [0.0, 1.0, 1.0]}, "mean_image": None},
        "'config' std is [0.0, 1.0, 1.0], expected 3 finite numbers > 0",
    ),
    "config_mean_nan": (
        {"config": {"model": "m", "mean": [float("nan")] * 3, "std": [1] * 3}, "mean_image": None},
        "'config' mean is [nan, nan, nan], expected 3 finite numbers >= 0",
    ),
    "config_normalize_word": (
        {"config": {"model": "m", "normalize": "zscore"}},
        "'config' normalize is 'zscore', expected one of per-pixel-mean",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_evaluate_refuses_a_doctored_checkpoint_in_one_line(
    tmp_path, synthetic_cifar, capsys, name
):
    changes, expected = BAD[name]
    ckpt = write_checkpoint(tmp_path / f"{name}.pt", **changes)
    argv = ["evaluate", str(ckpt), "--data-root", str(synthetic_cifar), "--device", "cpu"]
    line = one_clear_line(*run_repro(capsys, *argv))
    assert str(ckpt) in line and expected in line, line


@pytest.mark.parametrize("name", ["huge_num_classes", "meanimg_8x8", "config_string"])
def test_analyze_refuses_a_doctored_checkpoint_in_one_line(tmp_path, synthetic_cifar, capsys, name):
    changes, expected = BAD[name]
    run = tmp_path / "run"
    run.mkdir()
    write_checkpoint(run / "final.pt", **changes)
    argv = ["analyze", "layer-response", str(run), "--data-root", str(synthetic_cifar)]
    line = one_clear_line(*run_repro(capsys, *argv, "--device", "cpu"))
    assert expected in line, line
    assert not (run / "layer_response.json").exists()


def test_the_sound_checkpoint_the_cases_start_from_loads(tmp_path):
    state = load_checkpoint(write_checkpoint(tmp_path / "ok.pt"))  # the doctoring is what fails
    assert mean_image_problem(state["mean_image"]) is None


def test_an_imagenet_state_dict_is_pointed_to_repro_verify(tmp_path, capsys):
    path = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18").state_dict(), path)
    line = one_clear_line(*run_repro(capsys, "evaluate", str(path)))
    assert f"`repro verify {path}`" in line and "--from akamaster" not in line


def test_a_compressed_record_that_would_inflate_past_the_file_is_refused(tmp_path, capsys):
    """torch stores records uncompressed; a deflated one bigger than the file is a bomb."""
    good = write_checkpoint(tmp_path / "good.pt")
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/0"):
                data = bytes(64 << 20)  # 64 MiB of zeros deflate to ~64 KB
            dst.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < (64 << 20) // 50
    line = one_clear_line(*run_repro(capsys, "evaluate", str(bomb)))
    assert "would inflate to 67108864 bytes, more than the whole" in line


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "loop"])
def test_special_files_given_as_checkpoints_are_named(tmp_path, capsys, kind):
    path = {"fifo": tmp_path / "ckpt.pt", "dev-zero": Path("/dev/zero"), "loop": tmp_path / "l"}
    target = path[kind]
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        target.symlink_to(target)
    line = one_clear_line(*run_repro(capsys, "evaluate", str(target)))
    said = {"fifo": "is a FIFO", "dev-zero": "is a character device", "loop": "symbolic link loop"}
    assert said[kind] in line and "does not exist" not in line


# --- flags that make no sense are refused before anything is written --------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--seed", "-1"], "--seed must be a whole number from 0 to 2**63-1, got -1"),
        (["--seed", str(10**30)], "--seed must be a whole number from 0 to 2**63-1"),
        (["--split-seed", "-2"], "--split-seed must be a whole number"),
        (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
        (["--step-size", "10", "--milestones", "5"], "--milestones and --step-size are two"),
        (["--model-kwargs", '{"num_classes": 10000000000000}'], "num_classes is 10000000000000"),
        (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["--epochs", "-5"], "--epochs and --iterations must be >= 1"),
    ],
)
def test_train_refuses_nonsense_flags_in_one_line(
    tmp_path, synthetic_cifar, capsys, flags, expected
):
    out = tmp_path / "run"
    argv = tiny_args(synthetic_cifar, out, *flags)
    if "--epochs" in flags:
        argv[argv.index("--iterations") : argv.index("--iterations") + 2] = []
    line = one_clear_line(*run_repro(capsys, *argv))
    assert expected in line, line
    assert not (out / "config.json").exists()


def test_verify_warns_when_normalize_overrides_what_the_checkpoint_records(
    tmp_path, synthetic_cifar, capsys
):
    ckpt = write_checkpoint(tmp_path / "final.pt")
    common = [str(ckpt), "--data-root", str(synthetic_cifar), "--device", "cpu", "--limit", "20"]
    rc, _, err = run_repro(capsys, "verify", *common, "--normalize", "imagenet")
    assert rc == 0
    assert "warning: --normalize imagenet overrides the per-pixel-mean normalisation" in err
    rc, _, err = run_repro(capsys, "verify", *common)
    assert rc == 0 and "overrides" not in err
