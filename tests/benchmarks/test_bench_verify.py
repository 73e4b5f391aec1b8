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
