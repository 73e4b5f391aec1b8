"""Evaluation throughput (images/s): ``repro.evaluate.evaluate`` (inference_mode, eval-mode
BN, normalisation on the device, one host read per call) over synthetic uint8 images in large
batches. CPU: 256 images in one batch, fp32 NCHW and channels_last; CUDA (skipped without it):
a 10,000-image test set in batches of 2,000, bf16 + channels_last, and fp32 NCHW for ResNet-56.
"""

from __future__ import annotations

import pytest
import torch

from repro.data import CIFAR10_MEAN, CIFAR10_STD
from repro.evaluate import evaluate
from repro.train.components import make_model

MODELS = ("resnet20", "resnet56", "resnet110", "plain56")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: no CUDA device here, GPU benchmark skipped"
)
# device -> (images per round, batch)
SIZES = {"cpu": (256, 256), "cuda": (10_000, 2_000)}


def case(device: str, model: str, setting: str, *marks) -> pytest.param:
    return pytest.param(device, model, setting, marks=marks, id=f"{device}-{model}-{setting}")


CASES = [
    *(case("cpu", m, s) for m in MODELS for s in ("fp32-nchw", "fp32-channels_last")),
    *(case("cuda", m, "bf16-channels_last", pytest.mark.gpu, needs_cuda) for m in MODELS),
    case("cuda", "resnet56", "fp32-nchw", pytest.mark.gpu, needs_cuda),
]


@pytest.mark.parametrize(("device_type", "model", "setting"), CASES)
def test_bench_eval(benchmark, throughput, device_type: str, model: str, setting: str) -> None:
    device = torch.device(device_type)
    n, batch = SIZES[device_type]
    channels_last = "channels_last" in setting
    amp = "bf16" if setting.startswith("bf16") else "off"
    torch.manual_seed(0)
    net = make_model(model, {}).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)
    labels = (torch.arange(n) % 10).to(device)

    def one_round() -> float:
        return evaluate(
            net,
            images,
            labels,
            CIFAR10_MEAN,
            CIFAR10_STD,
            batch_size=batch,
            channels_last=channels_last,
            amp=amp,
        ).loss

    rounds, warmup = (3, 1) if device.type == "cpu" else (10, 2)
    loss = benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=warmup)
    assert loss == loss  # not NaN
    rate = throughput(
        benchmark,
        n,
        device,
        model=model,
        batch=batch,
        settings={"name": setting, "channels_last": channels_last, "amp": amp},
    )
    assert rate > 0
