"""`repro analyze layer-response`: run folders and checkpoints in, Fig. 7 JSON and PNG out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.analysis import layer_response_std
from repro.cli import main
from repro.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from repro.models import build_model
from repro.store import read_layer_response
from repro.train.checkpoint import model_from_checkpoint, save_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def save_run(run_dir: Path, name: str, depth: int, seed: int, data_root: Path, file="final.pt"):
    """A tiny random-init checkpoint in the trainer's run-folder layout."""
    torch.manual_seed(seed)
    model = build_model(name, depth=depth)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": name,
        "seed": seed,
        "mean": list(CIFAR10_MEAN),
        "std": list(CIFAR10_STD),
        "data_root": str(data_root),
    }
    state = {
        "model_name": name,
        "model_kwargs": {"depth": depth},
        "model": model.state_dict(),
        "config": config,
        "iteration": 7,
    }
    save_checkpoint(state, run_dir / file)
    return run_dir / file


@pytest.fixture
def data_root(synthetic_cifar: Path) -> Path:
    return synthetic_cifar  # 20 random test images in the official layout


@pytest.fixture
def reproduction(tmp_path: Path, data_root: Path) -> Path:
    """runs/<id>/<model>/seed<k>/final.pt for resnet8 and plain8, two seeds each."""
    root = tmp_path / "runs" / "r1"
    for name, label in (("resnet_cifar", "resnet8"), ("plain_cifar", "plain8")):
        for seed in (0, 1):
            save_run(root / label / f"seed{seed}", name, 8, seed, data_root)
    return root


def analyze(*args: str) -> int:
    return main(["analyze", "layer-response", *args, "--batch-size", "5", "--device", "cpu"])


def test_reproduction_folder_gives_json_per_model_and_seed_and_a_png(reproduction, capsys):
    assert analyze(str(reproduction)) == 0
    doc = json.loads((reproduction / "layer_response.json").read_text())
    assert (reproduction / "layer_response.png").read_bytes()[:8] == PNG_MAGIC
    assert {"split", "num_images", "definition", "models", "data_official"} <= set(doc)
    assert doc["split"] == "test" and doc["num_images"] == 20
    assert set(doc["models"]) == {"resnet8", "plain8"}
    for name, residual in (("resnet8", True), ("plain8", False)):
        m = doc["models"][name]
        assert m["residual"] is residual and m["depth"] == 8 and m["num_layers"] == 7
        assert set(m["seeds"]) == {"seed0", "seed1"}
        runs = list(m["seeds"].values())
        for r in runs:
            assert {"std", "sorted_std", "channel_std", "mean_std", "checkpoint"} <= set(r)
            assert len(r["std"]) == 7 and [len(c) for c in r["channel_std"]] == [16] * 3 + [
                32,
                32,
                64,
                64,
            ]
            assert r["mean_std"] == pytest.approx(np.mean(r["std"]))
            assert r["sorted_std"] == sorted(r["std"], reverse=True)
        assert m["std"] == pytest.approx(np.mean([r["std"] for r in runs], axis=0))
        assert m["mean_std"] == pytest.approx(np.mean([r["mean_std"] for r in runs]))
    assert read_layer_response(reproduction) == doc  # the run directory's one reader
    assert "resnet8: mean response std" in capsys.readouterr().out


def test_json_values_equal_a_direct_computation_on_the_checkpoint(reproduction, data_root):
    run = reproduction / "plain8" / "seed1"
    assert analyze(str(run)) == 0
    doc = json.loads((run / "layer_response.json").read_text())
    model, _ = model_from_checkpoint(run / "final.pt")
    images = load_cifar10(data_root).test_images
    direct = layer_response_std(model, images, batch_size=20)
    np.testing.assert_allclose(
        doc["models"]["plain8"]["seeds"]["seed1"]["std"], direct.std, rtol=1e-5
    )


def test_unfinished_run_falls_back_to_last_pt_with_a_warning(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    save_run(run, "resnet_cifar", 8, 3, data_root, file="last.pt")
    assert analyze(str(run)) == 0
    assert "no final.pt" in capsys.readouterr().err
    doc = json.loads((run / "layer_response.json").read_text())
    assert list(doc["models"]["resnet8"]["seeds"]) == ["seed3"]


def test_checkpoint_files_with_out_folder_and_explicit_data_root(tmp_path, data_root):
    a = save_run(tmp_path / "a", "resnet_cifar", 8, 0, tmp_path / "nowhere")
    b = save_run(tmp_path / "b", "plain_cifar", 8, 0, tmp_path / "nowhere")
    out = tmp_path / "reports" / "fig7"
    assert analyze(str(a), str(b), "--out", str(out), "--data-root", str(data_root)) == 0
    assert set(json.loads((out / "layer_response.json").read_text())["models"]) == {
        "resnet8",
        "plain8",
    }
    assert (out / "layer_response.png").stat().st_size > 10_000


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_path_that_is_neither_run_nor_checkpoint_gives_one_error_line(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    assert analyze(str(junk)) == 2
    assert "neither a checkpoint, a run folder" in one_error_line(capsys)
    assert analyze(str(junk / "notes.txt")) == 2
    assert "notes.txt" in one_error_line(capsys)
    assert analyze(str(tmp_path / "missing")) == 2
    assert "does not exist" in one_error_line(capsys)
    assert not list(tmp_path.rglob("layer_response.*"))


def test_several_inputs_need_out_and_duplicates_are_refused(reproduction, tmp_path, capsys):
    ckpt = reproduction / "plain8" / "seed0" / "final.pt"
    assert analyze(str(reproduction), str(ckpt)) == 2
    assert "--out" in one_error_line(capsys)
    assert analyze(str(reproduction), str(ckpt), "--out", str(tmp_path / "o")) == 2
    assert "two checkpoints of plain8 seed0" in one_error_line(capsys)
    assert not list(tmp_path.rglob("layer_response.*"))


def test_bad_flags_give_one_error_line(reproduction, capsys):
    assert main(["analyze", "layer-response", str(reproduction), "--batch-size", "0"]) == 2
    assert "--batch-size" in one_error_line(capsys)
    assert main(["analyze", "layer-response", str(reproduction), "--device", "nonsense"]) == 2
    assert "--device" in one_error_line(capsys)
