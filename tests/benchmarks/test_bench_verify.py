"""How long `repro verify` takes to refuse a file that is no ResNet of the paper (issue 23: a
refusal must not cost the data set's loading or torch's meta-device kernels; goal < 5 s of CPU on
2 cores). The file is a ResNet-56 state_dict with its last stage cut off, the refusal is decided
by structure alone, and the data root does not exist (it is never read)."""

from __future__ import annotations

import time

import torch

from repro.cli import main
from repro.models import build_model


def test_bench_verify_refusal(benchmark, tmp_path, capsys) -> None:
    state = build_model("resnet56").state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.")}
    path = tmp_path / "cut.pt"
    torch.save(state, path)
    argv = ["verify", str(path), "--normalize", "imagenet", "--data-root", str(tmp_path / "none")]

    def refuse() -> int:
        return main(argv)

    cpu = time.process_time()
    rc = benchmark.pedantic(refuse, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["cpu_s_per_round"] = (time.process_time() - cpu) / 6
    assert rc == 2 and "matches no reference net" in capsys.readouterr().err


def onnx_conv_only(path) -> None:
    """An ONNX graph of one 3x3 convolution: no ResNet of the paper."""
    onnx = __import__("pytest").importorskip("onnx")
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(torch.randn(16, 3, 3, 3).numpy(), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    onnx.save(helper.make_model(helper.make_graph([node], "g", [], [], [weight])), str(path))


def test_bench_verify_refuses_other_frameworks_files(benchmark, tmp_path, capsys) -> None:
    """A Caffe model (refused by its name) and an ONNX graph that is no ResNet (its weights read
    with the onnx package, then refused by structure), neither reading the data set."""
    caffe = tmp_path / "r20.caffemodel"
    caffe.write_bytes(b"\n\x04r20" + bytes(64))
    graph = tmp_path / "conv.onnx"
    onnx_conv_only(graph)
    rest = ["--normalize", "imagenet", "--data-root", str(tmp_path / "none")]

    def refuse() -> tuple[int, int]:
        return main(["verify", str(caffe), *rest]), main(["verify", str(graph), *rest])

    cpu = time.process_time()
    rcs = benchmark.pedantic(refuse, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["cpu_s_per_round"] = (time.process_time() - cpu) / 6
    err = capsys.readouterr().err
    assert rcs == (2, 2) and "is a Caffe model" in err and "matches no reference net" in err
