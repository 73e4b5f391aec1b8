"""`repro verify` of ONNX models and refusals of Caffe files (issue 23, item 4 of "What to build").

An ONNX graph's weights are read with the onnx package (the optional extra ``onnx``) and mapped
by structure like a PyTorch file; a graph whose exporter folded BN into the convolutions is read
back exactly. The tests that need onnx skip cleanly without it; the refusals need nothing.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import one_clear_line, run_repro
from foreign_nets import TheirNet, taught_cifar
from torch import nn

from repro.data import CIFAR10_MEAN, load_cifar10
from repro.foreign.layouts import Layout
from repro.foreign.readings import readings
from repro.foreign.verify import load_foreign, verify

COMMON_STD = (0.2023, 0.1994, 0.2010)
WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "akamaster-cifar10"
WEIGHTS = Path(os.environ.get("REPRO_AKAMASTER_ROOT") or WEIGHTS)  # as REPRO_MINI_ROOT
RESNET20 = WEIGHTS / "resnet20-12fca82f.th"


def exported(net: nn.Module, path: Path, fold: bool) -> Path:
    """``net`` in evaluation mode exported by torch's TorchScript exporter: with constant
    folding it folds each BN into the convolution before it, as most exported models are."""
    pytest.importorskip("onnx")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                net.eval(), (torch.randn(1, 3, 32, 32),), buffer, dynamo=False,
                do_constant_folding=fold,
            )  # fmt: skip
        except (ImportError, TypeError, RuntimeError) as exc:  # a torch without it
            pytest.skip(f"torch.onnx.export (TorchScript exporter) is not available: {exc}")
    path.write_bytes(buffer.getvalue())
    return path


def reading_logits(path: Path, layout: Layout, x: torch.Tensor, name: str = "resnet8"):
    found = readings(load_foreign(path), path, name, layout)
    return found[0].model.eval()(x)


@pytest.mark.parametrize("fold", [False, True], ids=["bn-nodes", "bn-folded-by-exporter"])
def test_an_onnx_export_maps_with_the_authors_logits(tmp_path, fold) -> None:
    torch.manual_seed(0)
    theirs = TheirNet(8, layout=("after", "avg-pool")).eval()
    path = exported(theirs, tmp_path / "theirs.onnx", fold)
    x = torch.randn(3, 3, 32, 32)
    got = reading_logits(path, Layout("after", "avg-pool"), x)
    torch.testing.assert_close(got, theirs(x), rtol=1e-5, atol=1e-5)
    notes = load_foreign(path).notes
    assert bool(notes) == fold and (not fold or "7 ONNX convolutions carry a BN" in notes[0])
    wrong = reading_logits(path, Layout("split", "strided"), x)
    assert not torch.allclose(wrong, theirs(x), atol=1e-3)  # the comparison can fail


def graph_of(net: TheirNet, path: Path) -> Path:
    """Another exporter's graph, built node by node: BN with epsilon 1e-3 (its variance moved
    by the difference), and the head as ``MatMul`` by [in, out] + ``Add``."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, t: torch.Tensor) -> str:
        inits.append(numpy_helper.from_array(t.detach().numpy().copy(), name))
        return name

    prev = "x"
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            ins = [prev, const(f"{name}.w", m.weight)]
            nodes.append(helper.make_node("Conv", ins, [f"{name}.y"], name=name))
        elif isinstance(m, nn.BatchNorm2d):
            roles = (m.weight, m.bias, m.running_mean, m.running_var + 1e-5 - 1e-3)
            ins = [prev, *(const(f"{name}.{i}", t) for i, t in enumerate(roles))]
            nodes.append(
                helper.make_node("BatchNormalization", ins, [f"{name}.y"], name=name, epsilon=1e-3)
            )
        elif isinstance(m, nn.Linear):
            ins = [prev, const(f"{name}.w", m.weight.T)]
            nodes.append(helper.make_node("MatMul", ins, [f"{name}.m"], name=f"{name}/MatMul"))
            add_in = [f"{name}.m", const(f"{name}.b", m.bias)]
            nodes.append(helper.make_node("Add", add_in, [f"{name}.y"], name=f"{name}/Add"))
        else:
            continue
        prev = nodes[-1].output[0]
    graph = helper.make_graph(nodes, "theirs", [], [], initializer=inits)
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_another_exporters_graph_maps_with_the_authors_logits(tmp_path) -> None:
    torch.manual_seed(3)
    theirs = TheirNet(8, option="B").eval()
    path = graph_of(theirs, tmp_path / "theirs.onnx")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = readings(load_foreign(path), path)[0].model.eval()(x)
        torch.testing.assert_close(got, theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_repro_verify_of_an_onnx_file_gives_the_right_net_and_error(tmp_path, capsys) -> None:
    torch.manual_seed(1)
    theirs = TheirNet(8, layout=("after", "strided"))
    data = taught_cifar(tmp_path / "data", theirs, CIFAR10_MEAN, COMMON_STD, n_test=100)
    path = exported(theirs, tmp_path / "r8.onnx", fold=True)
    rc, out, _ = run_repro(
        capsys, "verify", str(path), "--normalize", "cifar-common", "--data-root", str(data),
        "--json",
    )  # fmt: skip
    result = json.loads(out)
    assert rc == 0 and result["model"] == "resnet8" and result["test"]["error"] == 0.0
    assert result["layout"] == {"padding": "after", "subsample": "strided"}
    assert result["found"].startswith("an ONNX graph's weights")


@pytest.mark.slow
def test_akamaster_resnet20_as_onnx_scores_as_its_th_file(tmp_path, mini_root) -> None:
    """Their published ResNet-20 (.th) exported to ONNX (BN folded by the exporter): the same
    error and Fig. 7 on the real mini test set as the .th file (8.36 % when last measured)."""
    if not RESNET20.is_file():
        pytest.skip(f"akamaster's published weights are not at {WEIGHTS}")
    data = load_cifar10(mini_root)
    fast: dict[str, Any] = {"layout": Layout(), "check_normalization": False}
    th = verify(RESNET20, "imagenet", data, **fast)
    net = readings(load_foreign(RESNET20), RESNET20, "resnet20", Layout())[0].model
    path = exported(net, tmp_path / "resnet20.onnx", fold=True)
    ox = verify(path, "imagenet", data, **fast)
    assert ox["model"] == th["model"] == "resnet20" and th["test"]["error"] < 10
    assert ox["test"]["error"] == th["test"]["error"]
    assert ox["fig7"]["mean_response_std"] == pytest.approx(th["fig7"]["mean_response_std"], 1e-4)


def test_onnx_without_the_onnx_package_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    line = one_clear_line(*run_repro(capsys, "verify", str(path), "--normalize", "imagenet"))
    assert "is an ONNX model" in line and "resnet-repro[onnx]" in line


def test_a_damaged_onnx_file_is_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\xff" * 64)
    line = one_clear_line(*run_repro(capsys, "verify", str(path), "--normalize", "imagenet"))
    assert "is not a readable ONNX model" in line


@pytest.mark.parametrize(
    "name, what",
    [
        ("r20.caffemodel", "is a Caffe model"),
        ("r20_iter_64000.solverstate", "is a Caffe solver state"),
        ("r20.caffemodel.h5", "is a Caffe model"),  # Caffe's HDF5 format: not called Keras
    ],
)
def test_caffe_files_are_refused_saying_why_and_what_to_do(tmp_path, capsys, name, what):
    path = tmp_path / name
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64) if name.endswith(".h5") else b"\n\x04r20")
    argv = [str(path), "--normalize", "imagenet", "--data-root", str(tmp_path / "no-data")]
    line = one_clear_line(*run_repro(capsys, "verify", *argv))
    assert what in line and "OpenCV's dnn" in line and "torch.save" in line
    assert "truncated or corrupt" not in line and "Keras" not in line and "CIFAR" not in line


class Normalised(nn.Module):
    """A net that normalises its own input, as some exported models do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(COMMON_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def test_a_normalisation_inside_the_graph_is_noted(tmp_path) -> None:
    torch.manual_seed(4)
    theirs = TheirNet(8, "B").eval()
    plain = load_foreign(exported(theirs, tmp_path / "plain.onnx", fold=True))
    inside = load_foreign(exported(Normalised(theirs), tmp_path / "inside.onnx", fold=True))
    assert not any("before its first Conv" in n for n in plain.notes)
    assert any("computes Sub, Div with constants before its first Conv" in n for n in inside.notes)
