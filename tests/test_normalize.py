"""`--normalize per-pixel-mean|per-channel|imagenet`: the paper subtracts the per-pixel mean of the
training images (He et al. 2016, Sec. 3.4/4.2), and every reader of a run (validation, test,
`repro evaluate`, Fig. 7) normalises as the run trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trainer_helpers import run_cli, tiny_args

from repro.analysis.fig7 import measure, prepare_jobs
from repro.analysis.layer_response import layer_response_std
from repro.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    input_normalization,
    load_cifar10,
    normalize,
    pixel_mean,
)
from repro.errors import ReproError
from repro.evaluate import checkpoint_normalization
from repro.recipes import get_recipe
from repro.train.checkpoint import load_checkpoint


def _images(n: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_the_per_pixel_mean_is_the_mean_image_of_the_images_on_the_0_1_scale() -> None:
    images = _images()
    want = images.double().mean(dim=0) / 255
    got = pixel_mean(images)
    assert got.shape == (3, 32, 32) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-7)
    assert torch.equal(pixel_mean(images.flip(0)), got)  # exact: any order, any device


def test_per_pixel_mean_subtracts_the_image_and_divides_by_nothing() -> None:
    images = _images()
    mean, std = input_normalization("per-pixel-mean", images)
    x = normalize(images[:4], mean, std)
    torch.testing.assert_close(x, images[:4].float() / 255 - pixel_mean(images))
    assert x.mean(dim=0).abs().max() > 0.05  # not per-channel: each pixel has its own mean
    torch.testing.assert_close(
        normalize(images, mean, std).mean(dim=0), torch.zeros(3, 32, 32), atol=1e-5, rtol=0
    )


def test_per_channel_is_todays_cifar10_constants_and_imagenet_is_imagenets() -> None:
    images = _images()
    assert input_normalization("per-channel", images) == (CIFAR10_MEAN, CIFAR10_STD)
    assert input_normalization("imagenet", images) == (IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(
        normalize(images), normalize(images, *input_normalization("per-channel", images))
    )


def test_paper_subtracts_the_per_pixel_mean_and_common_keeps_per_channel() -> None:
    assert get_recipe("paper").normalize == "per-pixel-mean"
    assert get_recipe("paper-val").normalize == "per-pixel-mean"
    assert get_recipe("common").normalize == "per-channel"


def test_unknown_normalize_is_one_line_naming_the_flag_and_writes_nothing(
    synthetic_cifar: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert run_cli(tiny_args(synthetic_cifar, out, "--normalize", "zca")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--normalize 'zca'" in err and "per-pixel-mean" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny finished paper-val run (per-pixel mean of its 90 training images)."""
    from data_helpers import write_cifar10

    tmp = tmp_path_factory.mktemp("pixel")
    data, out = write_cifar10(tmp / "data"), tmp / "run"
    assert run_cli(tiny_args(data, out, "--iterations", "12", "--milestones", "6", "9")) == 0
    return data, out


def test_the_run_records_the_mode_and_every_checkpoint_holds_the_mean_image(pixel_run) -> None:
    data, out = pixel_run
    config = json.loads((out / "config.json").read_text())
    assert config["normalize"] == "per-pixel-mean" and config["mean"] is None
    train_images = load_cifar10(data).train_images
    final = load_checkpoint(out / "final.pt")
    image = final["mean_image"]
    assert image.shape == (3, 32, 32)
    assert not torch.equal(image, pixel_mean(train_images))  # 90 of the 100 images: train45k
    assert config["data_counts"]["train"] == 90
    assert config["mean_image"]["channel_means"] == pytest.approx(
        image.double().mean((1, 2)).tolist()
    )


def test_repro_evaluate_gives_the_runs_own_test_error_and_loss(pixel_run, capsys) -> None:
    data, out = pixel_run
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert run_cli(["evaluate", str(out / "final.pt"), "--data-root", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normalization"]["name"] == "per-pixel-mean"
    assert report["error"] == pytest.approx(last["test_error"])
    assert report["loss"] == pytest.approx(last["test_loss"], rel=1e-5)


def test_repro_verify_reads_our_checkpoints_own_normalisation(pixel_run, capsys) -> None:
    """No --normalize needed for a resnet-repro checkpoint: its mean image (of the 45k it
    trained on, not the 50k a recomputed one would use) gives the run's own test error."""
    data, out = pixel_run
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    args = ["verify", str(out / "final.pt"), "--data-root", str(data), "--json"]
    assert run_cli([*args, "--model", "resnet8", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normalization"]["name"] == "per-pixel-mean"
    assert report["normalization"]["source"] == "the checkpoint's per-pixel mean image"
    assert report["test"]["error"] == pytest.approx(last["test_error"])


def test_fig7_normalises_with_the_runs_mean_image(pixel_run) -> None:
    data, out = pixel_run
    (job,) = prepare_jobs([out / "final.pt"])
    images = load_cifar10(data).test_images
    (entry,) = measure([job], images, torch.device("cpu"), batch_size=500)
    state = load_checkpoint(out / "final.pt")
    want = layer_response_std(job.model, normalize(images, state["mean_image"], (1.0, 1.0, 1.0)))
    assert entry.result.std == pytest.approx(want.std)
    per_channel = layer_response_std(job.model, images)
    assert entry.result.std != pytest.approx(per_channel.std)


def test_a_checkpoint_without_the_field_normalises_as_before() -> None:
    old = {"config": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    norm = checkpoint_normalization(old)
    assert (norm.name, norm.mean, norm.std) == ("per-channel", (0.5,) * 3, (0.25,) * 3)
    none = checkpoint_normalization({"config": {}})
    assert (none.mean, none.std) == (CIFAR10_MEAN, CIFAR10_STD)


def test_a_per_pixel_mean_checkpoint_without_its_image_is_named_corrupt() -> None:
    with pytest.raises(ReproError, match="holds no mean image"):
        checkpoint_normalization({"config": {"normalize": "per-pixel-mean"}})
