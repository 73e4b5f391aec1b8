"""Importing akamaster/pytorch_resnet_cifar10's published weights (their key layout, built here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import one_clear_line, run_cli
from torch import nn

from repro.data import IMAGENET_MEAN, IMAGENET_STD, load_cifar10
from repro.errors import ReproError
from repro.evaluate import evaluate
from repro.foreign.akamaster import convert_state_dict, depth_of, load_akamaster, rename_key
from repro.models import build_model
from repro.models.cifar import IdentityPadShortcut
from repro.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
OLD_RUN = ROOT / "tests" / "fixtures" / "old_format" / "run"
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "akamaster-cifar10"
PUBLISHED = {  # their README's best_prec1 per file
    "resnet20-12fca82f.th": 91.78,
    "resnet32-d509ac18.th": 92.78,
    "resnet56-4bfd9763.th": 93.62,
}


def our_resnet(name: str = "resnet20", seed: int = 0) -> nn.Module:
    """One of our nets with random BN statistics, so that every tensor matters for the output."""
    torch.manual_seed(seed)
    model = build_model(name)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
            m.num_batches_tracked.fill_(781)
    return model.eval()


def their_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our keys in their layout: DataParallel's ``module.`` prefix, classifier named ``linear``."""
    out = {}
    for k, v in model.state_dict().items():
        k = "linear." + k.removeprefix("fc.") if k.startswith("fc.") else k
        out["module." + k] = v.clone()
    return out


def write_their_file(path: Path, model: nn.Module, best_prec1: float = 91.73, **extra) -> Path:
    torch.save(
        {"epoch": 200, "state_dict": their_state_dict(model), "best_prec1": best_prec1, **extra},
        path,
    )
    return path


def test_their_layout_has_the_keys_the_published_files_have():
    keys = set(their_state_dict(our_resnet()))
    assert "module.conv1.weight" in keys and "module.linear.bias" in keys
    assert {
        f"module.bn1.{s}"
        for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    } <= keys
    assert "module.layer3.2.bn2.running_var" in keys and "module.layer1.0.conv2.weight" in keys
    assert not any("shortcut" in k for k in keys)  # option A: no parameters


def test_their_option_a_shortcut_equals_ours():
    x = torch.randn(2, 16, 32, 32)
    planes = 32  # their LambdaLayer: pad planes // 4 channels each side after ::2 subsampling
    theirs = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
    assert torch.equal(IdentityPadShortcut(16, planes, 2)(x), theirs)


def test_imported_weights_give_identical_outputs(tmp_path):
    ours = our_resnet("resnet20")
    ckpt = load_akamaster(write_their_file(tmp_path / "resnet20.th", ours), "resnet20")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model.eval()(x), ours(x))
    assert ckpt.best_prec1 == pytest.approx(91.73)
    assert ckpt.mean == IMAGENET_MEAN and ckpt.std == IMAGENET_STD


def test_depth_is_read_from_the_number_of_blocks():
    assert (
        depth_of({rename_key(k): v for k, v in their_state_dict(our_resnet("resnet32")).items()})
        == 32
    )


def test_files_without_num_batches_tracked_still_load(tmp_path):
    ours = our_resnet()
    sd = {k: v for k, v in their_state_dict(ours).items() if "num_batches_tracked" not in k}
    model = convert_state_dict(sd, "resnet20")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ours(x))


def test_missing_and_unexpected_keys_are_named():
    sd = their_state_dict(our_resnet())
    del sd["module.layer2.0.conv1.weight"]
    sd["module.layer2.0.shortcut.0.weight"] = torch.zeros(32, 16, 1, 1)
    with pytest.raises(ReproError) as err:
        convert_state_dict(sd, "resnet20")
    msg = str(err.value)
    assert "missing keys: layer2.0.conv1.weight" in msg
    assert "unexpected keys: layer2.0.shortcut.0.weight" in msg


def test_wrong_shapes_are_named():
    sd = their_state_dict(our_resnet())
    sd["module.linear.weight"] = torch.zeros(100, 64)
    with pytest.raises(ReproError, match=r"'fc.weight' has shape \[100, 64\]"):
        convert_state_dict(sd, "resnet20")


def test_depth_mismatch_names_both_depths():
    with pytest.raises(ReproError, match="holds a resnet32 .* --model is resnet20"):
        convert_state_dict(their_state_dict(our_resnet("resnet32")), "resnet20")


# --- `repro evaluate --from akamaster` ------------------------------------------------------


def test_cli_reports_best_prec1_and_applies_imagenet_normalisation(
    tmp_path, synthetic_cifar, capsys
):
    ours = our_resnet()
    path = write_their_file(tmp_path / "resnet20-12fca82f.th", ours, best_prec1=91.73)
    rc, out, err = run_cli(
        capsys,
        str(path),
        "--from",
        "akamaster",
        "--model",
        "resnet20",
        "--data-root",
        str(synthetic_cifar),
        "--json",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    report = json.loads(out)
    data = load_cifar10(synthetic_cifar)
    expected = evaluate(ours, data.test_images, data.test_labels, IMAGENET_MEAN, IMAGENET_STD)
    assert report["best_prec1"] == pytest.approx(91.73)
    assert report["from"] == "akamaster" and report["model"] == "resnet20"
    assert report["normalization"]["mean"] == pytest.approx(IMAGENET_MEAN)
    assert report["normalization"]["std"] == pytest.approx(IMAGENET_STD)
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-5)
    assert report["error"] == pytest.approx(expected.error_percent)

    rc, out, err = run_cli(
        capsys,
        str(path),
        "--from",
        "akamaster",
        "--model",
        "resnet20",
        "--data-root",
        str(synthetic_cifar),
        "--device",
        "cpu",
    )
    assert rc == 0, err
    assert "best_prec1 91.73 %" in out


def test_cli_depth_mismatch_is_one_clear_line(tmp_path, synthetic_cifar, capsys):
    path = write_their_file(tmp_path / "resnet32.th", our_resnet("resnet32"))
    line = one_clear_line(
        *run_cli(
            capsys,
            str(path),
            "--from",
            "akamaster",
            "--model",
            "resnet20",
            "--data-root",
            str(synthetic_cifar),
        )
    )
    assert "resnet32" in line and "--model resnet32" in line


def test_cli_needs_model_with_akamaster(tmp_path, capsys):
    path = write_their_file(tmp_path / "r.th", our_resnet())
    line = one_clear_line(*run_cli(capsys, str(path), "--from", "akamaster"))
    assert "--model" in line


def test_cli_rejects_truncated_and_random_akamaster_files(tmp_path, capsys):
    path = write_their_file(tmp_path / "r.th", our_resnet())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    line = one_clear_line(*run_cli(capsys, str(path), "--from", "akamaster", "--model", "resnet20"))
    assert "truncated" in line
    junk = tmp_path / "junk.th"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    line = one_clear_line(*run_cli(capsys, str(junk), "--from", "akamaster", "--model", "resnet20"))
    assert str(junk) in line
    line = one_clear_line(
        *run_cli(capsys, str(tmp_path / "absent.th"), "--from", "akamaster", "--model", "resnet20")
    )
    assert "does not exist" in line


def test_cli_rejects_a_dict_without_state_dict(tmp_path, capsys):
    path = tmp_path / "other.th"
    torch.save({"weights": [1, 2, 3]}, path)
    line = one_clear_line(*run_cli(capsys, str(path), "--from", "akamaster", "--model", "resnet20"))
    assert "no 'state_dict'" in line


def test_a_project_checkpoint_given_as_akamasters_says_drop_the_flag(tmp_path, capsys):
    ours = tmp_path / "best.pt"
    model = build_model("resnet_cifar", depth=8)
    save_checkpoint(
        {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}, "model": model.state_dict()},
        ours,
    )
    old = OLD_RUN / "last.pt"  # pickles numpy arrays and TorchVersion: still recognised
    for path in (ours, old):
        line = one_clear_line(
            *run_cli(capsys, str(path), "--from", "akamaster", "--model", "resnet20")
        )
        assert "written by resnet-repro" in line and "drop --from akamaster" in line
        assert "\x1b" not in line and "truncated" not in line


def test_a_numpy_scalar_in_their_file_needs_trust_pickle(tmp_path, synthetic_cifar, capsys):
    path = write_their_file(tmp_path / "r.th", our_resnet(), best_prec1=np.float32(91.5))
    args = (str(path), "--from", "akamaster", "--model", "resnet20", "--device", "cpu")
    line = one_clear_line(*run_cli(capsys, *args))
    assert "refused" in line and "numpy" in line and "--trust-pickle" in line
    rc, out, err = run_cli(capsys, *args, "--data-root", str(synthetic_cifar), "--trust-pickle")
    assert rc == 0, err
    assert "best_prec1 91.50 %" in out


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_published_weights_load_without_trust_pickle(name):
    path = SHARED_WEIGHTS / name
    if not path.is_file():
        pytest.skip(f"akamaster's published weights are not at {SHARED_WEIGHTS}")
    ckpt = load_akamaster(path, name.split("-")[0])  # weights_only=True, no global registered
    assert ckpt.best_prec1 == pytest.approx(PUBLISHED[name], abs=0.01)
