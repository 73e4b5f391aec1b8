"""The evaluation function and `repro evaluate` on this project's checkpoints."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import one_clear_line, run_cli
from torch import nn

from repro.data import CLASSES, get_split, load_cifar10, normalize
from repro.errors import ReproError
from repro.evaluate import EvalResult, evaluate, refuse_nan_logits
from repro.models import build_model
from repro.train.checkpoint import save_checkpoint

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


class PixelOracle(nn.Module):
    """Predicts the class written into pixel (0, 0, 0) of the raw image (for exact error checks)."""

    def __init__(self, mean: float, std: float, wrong_for: int | None = None) -> None:
        super().__init__()
        self.mean, self.std, self.wrong_for = mean, std, wrong_for
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = torch.round((x[:, 0, 0, 0] * self.std + self.mean) * 255).long()
        pred = raw.clone()
        if self.wrong_for is not None:
            pred[raw == self.wrong_for] = (self.wrong_for + 1) % 10
        return F.one_hot(pred, 10).float() * 5.0


def labelled_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    return images, labels


def trained_looking_resnet(seed: int = 0) -> nn.Module:
    """A depth-8 ResNet (fast) with random BN statistics, so eval mode differs from train mode."""
    torch.manual_seed(seed)
    model = build_model("resnet_cifar", depth=8)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model


def test_error_and_per_class_accuracy_are_exact_for_a_known_predictor():
    images, labels = labelled_images(50)
    result = evaluate(
        PixelOracle(MEAN[0], STD[0], wrong_for=3), images, labels, MEAN, STD, batch_size=8
    )
    assert result.n == 50
    assert result.error_percent == pytest.approx(10.0)  # class 3 is 5 of 50 images
    assert result.per_class_accuracy[3] == 0.0
    assert all(a == 100.0 for i, a in enumerate(result.per_class_accuracy) if i != 3)
    assert result.per_class_count == (5,) * 10


def test_loss_and_error_match_a_single_full_batch_forward():
    model = trained_looking_resnet()
    images, labels = labelled_images(40, seed=1)
    model.eval()
    with torch.no_grad():
        logits = model(normalize(images, MEAN, STD))
    expected_loss = F.cross_entropy(logits, labels).item()
    expected_error = 100.0 * (logits.argmax(1) != labels).float().mean().item()
    result = evaluate(model, images, labels, MEAN, STD, batch_size=7)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    assert result.error_percent == pytest.approx(expected_error)


def test_result_does_not_depend_on_batch_size():
    model = trained_looking_resnet()
    images, labels = labelled_images(30, seed=2)
    a = evaluate(model, images, labels, MEAN, STD, batch_size=4)
    b = evaluate(model, images, labels, MEAN, STD, batch_size=1024)
    assert a.error_percent == b.error_percent
    assert a.per_class_accuracy == b.per_class_accuracy
    assert a.loss == pytest.approx(b.loss, rel=1e-5)


def test_evaluation_restores_train_mode_and_leaves_batchnorm_statistics_alone():
    model = trained_looking_resnet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = labelled_images(20)
    evaluate(model, images, labels, MEAN, STD, batch_size=8, channels_last=True)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_absent_class_has_no_accuracy_rather_than_zero():
    images, labels = labelled_images(20)
    keep = labels != 7
    result = evaluate(PixelOracle(MEAN[0], STD[0]), images[keep], labels[keep], MEAN, STD)
    assert result.per_class_accuracy[7] is None
    assert result.per_class_count[7] == 0
    assert result.error_percent == 0.0


def test_bad_inputs_raise_value_errors():
    model = PixelOracle(MEAN[0], STD[0])
    images, labels = labelled_images(10)
    with pytest.raises(ValueError, match="no images"):
        evaluate(model, images[:0], labels[:0], MEAN, STD)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, images, labels[:5], MEAN, STD)
    with pytest.raises(ValueError, match="uint8"):
        evaluate(model, images.float(), labels, MEAN, STD)
    with pytest.raises(ValueError, match="logits for 12 classes"):
        evaluate(model, images, labels, MEAN, STD, num_classes=12)


def test_bf16_autocast_on_cpu_agrees_with_float32_on_error():
    model = trained_looking_resnet()
    images, labels = labelled_images(20, seed=3)
    full = evaluate(model, images, labels, MEAN, STD)
    low = evaluate(model, images, labels, MEAN, STD, amp="bf16")
    assert isinstance(low, EvalResult)
    assert abs(low.loss - full.loss) < 0.05 * max(1.0, full.loss)


# --- `repro evaluate` on checkpoints this project wrote -------------------------------------


def write_checkpoint(path: Path, model: nn.Module, mean=MEAN, std=STD, config: bool = True):
    state = {
        "model_name": "resnet_cifar",
        "model_kwargs": {"depth": 8},
        "model": model.state_dict(),
        "iteration": 123,
    }
    if config:
        state["config"] = {"model": "resnet_cifar", "mean": list(mean), "std": list(std)}
    save_checkpoint(state, path)
    return path


def test_cli_json_reports_the_same_numbers_as_the_function(tmp_path, synthetic_cifar, capsys):
    model = trained_looking_resnet()
    ckpt = write_checkpoint(tmp_path / "best.pt", model)
    rc, out, err = run_cli(
        capsys,
        str(ckpt),
        "--data-root",
        str(synthetic_cifar),
        "--json",
        "--device",
        "cpu",
        "--batch-size",
        "8",
    )
    assert rc == 0, err
    report = json.loads(out)
    data = load_cifar10(synthetic_cifar)
    expected = evaluate(model, data.test_images, data.test_labels, MEAN, STD)
    assert report["checkpoint"] == str(ckpt)
    assert report["model"] == "resnet_cifar"
    assert report["split"] == "test"
    assert report["n"] == 20
    assert report["error"] == pytest.approx(expected.error_percent)
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-5)
    assert list(report["per_class_accuracy"]) == list(CLASSES)
    assert list(report["per_class_accuracy"].values()) == list(expected.per_class_accuracy)
    assert report["normalization"]["mean"] == pytest.approx(MEAN)
    assert report["normalization"]["std"] == pytest.approx(STD)
    assert report["normalization"]["source"] == "checkpoint config"
    assert report["data_official"] is False
    assert report["iteration"] == 123


def test_cli_applies_the_normalisation_the_checkpoint_records(tmp_path, synthetic_cifar, capsys):
    model = trained_looking_resnet()
    a = write_checkpoint(tmp_path / "a.pt", model)
    b = write_checkpoint(tmp_path / "b.pt", model, mean=(0.1, 0.1, 0.1), std=(0.5, 0.5, 0.5))
    losses = []
    for ckpt in (a, b):
        rc, out, err = run_cli(
            capsys, str(ckpt), "--data-root", str(synthetic_cifar), "--json", "--device", "cpu"
        )
        assert rc == 0, err
        losses.append(json.loads(out)["loss"])
    data = load_cifar10(synthetic_cifar)
    expected_b = evaluate(model, data.test_images, data.test_labels, (0.1,) * 3, (0.5,) * 3)
    assert losses[1] == pytest.approx(expected_b.loss, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_cli_validation_split_uses_the_seeded_hold_out(tmp_path, synthetic_cifar, capsys):
    model = trained_looking_resnet()
    ckpt = write_checkpoint(tmp_path / "m.pt", model)
    rc, out, err = run_cli(
        capsys,
        str(ckpt),
        "--data-root",
        str(synthetic_cifar),
        "--json",
        "--device",
        "cpu",
        "--split",
        "val5k",
        "--split-seed",
        "3",
    )
    assert rc == 0, err
    report = json.loads(out)
    images, labels = get_split(load_cifar10(synthetic_cifar), "val5k", seed=3)
    expected = evaluate(model, images, labels, MEAN, STD)
    assert report["split"] == "val5k" and report["n"] == 10 and report["split_seed"] == 3
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-5)


def test_cli_table_names_every_class_and_flags_a_subset(tmp_path, synthetic_cifar, capsys):
    ckpt = write_checkpoint(tmp_path / "m.pt", trained_looking_resnet(), config=False)
    rc, out, err = run_cli(
        capsys, str(ckpt), "--data-root", str(synthetic_cifar), "--device", "cpu"
    )
    assert rc == 0, err
    assert "test error" in out and "loss" in out
    assert all(name in out for name in CLASSES)
    assert "SUBSET" in out
    assert "the checkpoint records none" in out  # fell back to the CIFAR-10 constants, labelled


def test_cli_on_the_real_mini_subset_reports_its_size(tmp_path, mini_root, capsys):
    ckpt = write_checkpoint(tmp_path / "m.pt", trained_looking_resnet())
    rc, out, err = run_cli(
        capsys,
        str(ckpt),
        "--data-root",
        str(mini_root),
        "--json",
        "--device",
        "cpu",
        "--batch-size",
        "512",
    )
    assert rc == 0, err
    report = json.loads(out)
    assert report["n"] == load_cifar10(mini_root).num_test
    assert 0.0 <= report["error"] <= 100.0
    assert report["data_official"] is False


def test_nonexistent_checkpoint_is_one_clear_line(tmp_path, synthetic_cifar, capsys):
    line = one_clear_line(
        *run_cli(capsys, str(tmp_path / "nope.pt"), "--data-root", str(synthetic_cifar))
    )
    assert "does not exist" in line


def test_truncated_checkpoint_is_one_clear_line(tmp_path, synthetic_cifar, capsys):
    ckpt = write_checkpoint(tmp_path / "m.pt", trained_looking_resnet())
    raw = ckpt.read_bytes()
    ckpt.write_bytes(raw[: len(raw) // 2])
    line = one_clear_line(*run_cli(capsys, str(ckpt), "--data-root", str(synthetic_cifar)))
    assert "truncated" in line and str(ckpt) in line


def test_random_file_is_one_clear_line(tmp_path, synthetic_cifar, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    line = one_clear_line(*run_cli(capsys, str(junk), "--data-root", str(synthetic_cifar)))
    assert str(junk) in line


def test_a_foreign_dict_checkpoint_points_to_the_akamaster_importer(tmp_path, capsys):
    foreign = tmp_path / "their.th"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(16, 3, 3, 3)}}, foreign)
    line = one_clear_line(*run_cli(capsys, str(foreign)))
    assert "--from akamaster" in line


def test_missing_data_and_bad_flags_are_one_clear_line(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "m.pt", trained_looking_resnet())
    line = one_clear_line(*run_cli(capsys, str(ckpt), "--data-root", str(tmp_path / "none")))
    assert "does not exist" in line
    line = one_clear_line(*run_cli(capsys, str(ckpt), "--batch-size", "0"))
    assert "--batch-size" in line
    line = one_clear_line(*run_cli(capsys, str(ckpt), "--device", "tpu:banana"))
    assert "device" in line
    line = one_clear_line(*run_cli(capsys, str(ckpt), "--model", "resnet20"))
    assert "--from akamaster" in line


# --- what a checkpoint that cannot be evaluated says ----------------------------------------


def test_weights_that_do_not_fit_the_named_model_name_the_first_mismatch(tmp_path, capsys):
    deeper = build_model("resnet_cifar", depth=14).state_dict()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}, "model": deeper}, ckpt
    )
    line = one_clear_line(*run_cli(capsys, str(ckpt)))
    assert "resnet_cifar(depth=8)" in line and "unexpected 'layer1.1.conv1.weight'" in line
    assert "Error(s) in loading" not in line and "more mismatches" in line

    weights = trained_looking_resnet().state_dict()
    del weights["bn1.bias"]
    save_checkpoint(
        {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}, "model": weights}, ckpt
    )
    assert "it has no 'bn1.bias'" in one_clear_line(*run_cli(capsys, str(ckpt)))

    weights = trained_looking_resnet().state_dict()
    weights["fc.weight"] = torch.zeros(100, 64)
    save_checkpoint(
        {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}, "model": weights}, ckpt
    )
    line = one_clear_line(*run_cli(capsys, str(ckpt)))
    assert "'fc.weight' is [100, 64], the model needs [10, 64]" in line


def test_a_checkpoint_naming_a_model_that_cannot_be_built_is_one_clear_line(tmp_path, capsys):
    model = trained_looking_resnet().state_dict()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8, "colour": 1}, "model": model},
        ckpt,
    )
    assert "cannot build" in one_clear_line(*run_cli(capsys, str(ckpt)))
    save_checkpoint({"model_name": "resnet_cifarr", "model_kwargs": {}, "model": model}, ckpt)
    assert "cannot build" in one_clear_line(*run_cli(capsys, str(ckpt)))


def test_a_folder_is_named_as_one_and_its_checkpoint_suggested(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    line = one_clear_line(*run_cli(capsys, str(run)))
    assert "is a folder" in line and "does not exist" not in line and "pass a .pt file" in line
    write_checkpoint(run / "last.pt", trained_looking_resnet())
    assert f"pass {run / 'last.pt'}" in one_clear_line(*run_cli(capsys, str(run)))
    write_checkpoint(run / "final.pt", trained_looking_resnet())
    assert f"pass {run / 'final.pt'}" in one_clear_line(*run_cli(capsys, str(run)))


def test_a_truncated_last_checkpoint_says_how_to_go_on(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    write_checkpoint(run / "best.pt", trained_looking_resnet())
    last = write_checkpoint(run / "last.pt", trained_looking_resnet())
    last.write_bytes(last.read_bytes()[:5000])
    line = one_clear_line(*run_cli(capsys, str(last)))
    assert "truncated or corrupt" in line and "cut short" in line
    assert "delete it to train the run again" in line and "(best.pt)" in line


def test_a_flipped_bit_in_a_weight_is_caught_by_the_checksum(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "m.pt", trained_looking_resnet())
    with zipfile.ZipFile(ckpt) as archive:
        big = max(archive.infolist(), key=lambda i: i.file_size)  # the largest tensor
    raw = bytearray(ckpt.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, big.header_offset + 26)  # local header
    raw[big.header_offset + 30 + name_len + extra_len + big.file_size // 2] ^= 0x10
    ckpt.write_bytes(bytes(raw))
    line = one_clear_line(*run_cli(capsys, str(ckpt)))
    assert "corrupt" in line and "Bad CRC-32" in line


@pytest.mark.gpu
def test_cuda_evaluation_agrees_with_cpu_and_amp_keeps_the_error_close():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    model = trained_looking_resnet()
    images, labels = labelled_images(200, seed=4)
    cpu = evaluate(model, images, labels, MEAN, STD)
    gpu = evaluate(model.cuda(), images, labels, MEAN, STD, batch_size=64, channels_last=True)
    half = evaluate(model, images.cuda(), labels.cuda(), MEAN, STD, amp="fp16")
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-3)
    assert abs(gpu.error_percent - cpu.error_percent) <= 1.0
    assert abs(half.error_percent - cpu.error_percent) <= 2.0


def test_weights_that_overflow_to_nan_logits_are_refused_not_measured():
    """Finite weights can still overflow: a NaN logit is no measurement (issue 21)."""
    model = trained_looking_resnet()
    with torch.no_grad():
        model.fc.weight.fill_(3e38)  # finite, but the logits overflow to inf - inf = NaN
    images, labels = labelled_images(20)
    result = evaluate(model, images, labels, MEAN, STD)
    with pytest.raises(ReproError, match="gives NaN logits"):
        refuse_nan_logits(result, "the test net")
    good = evaluate(trained_looking_resnet(), images, labels, MEAN, STD)
    assert refuse_nan_logits(good, "the test net") is good
