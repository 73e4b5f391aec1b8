"""Training-step throughput (images/s) of the CIFAR nets of He et al. 2016 (Sec. 4.2) at batch 128.

Each round runs the trainer's own step (``repro.train.components.make_step``: forward, summed
cross-entropy, backward, SGD with momentum and weight decay) on one fixed, already normalised
batch on the device, so the figures exclude the data pipeline (``test_bench_data.py``).

CPU: fp32 NCHW and channels_last for every model (their ratio is the channels_last gain), bf16
autocast for ResNet-56, torch.compile for ResNet-20 (slow: ~25 s of compiling), activation
checkpointing for ResNet-110 with the peak resident memory of one step with and without.
CUDA (skipped without it): the fast path (bf16 autocast, channels_last, fused SGD, compile) for
every model, the knob-by-knob ladder and the other compile modes (CUDA graphs, max-autotune) for
ResNet-56, and ResNet-1202 with checkpointing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch

from repro.devices import resolve_amp
from repro.recipes import get_recipe
from repro.train.components import make_model, make_optimizer, make_step

ROOT = Path(__file__).resolve().parents[2]
BATCH = 128
MODELS = ("resnet20", "resnet56", "resnet110", "plain56")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: no CUDA device here, GPU benchmark skipped"
)


@dataclass(frozen=True)
class Setting:
    """The speed knobs, in the order the ladder adds them."""

    channels_last: bool = False
    amp: str = "off"
    compile: str | None = None  # a torch.compile mode (repro.train.switches.COMPILE_MODES)
    activation_checkpointing: bool = False


SETTINGS = {
    "fp32-nchw": Setting(),
    "fp32-channels_last": Setting(channels_last=True),
    "bf16-channels_last": Setting(channels_last=True, amp="bf16"),
    "fp32-channels_last-compile": Setting(channels_last=True, compile="default"),
    "fast": Setting(channels_last=True, amp="bf16", compile="default"),  # the CUDA default
    "fast-reduce-overhead": Setting(channels_last=True, amp="bf16", compile="reduce-overhead"),
    "fast-max-autotune": Setting(channels_last=True, amp="bf16", compile="max-autotune"),
    "bf16-channels_last-checkpointing": Setting(True, "bf16", activation_checkpointing=True),
    "fp32-channels_last-checkpointing": Setting(channels_last=True, activation_checkpointing=True),
}


def case(device: str, model: str, setting: str, *marks) -> pytest.param:
    return pytest.param(device, model, setting, marks=marks, id=f"{device}-{model}-{setting}")


CPU_CASES = [
    *(case("cpu", m, s) for m in MODELS for s in ("fp32-nchw", "fp32-channels_last")),
    case("cpu", "resnet56", "bf16-channels_last"),
    case("cpu", "resnet20", "fp32-channels_last-compile", pytest.mark.slow),
    case("cpu", "resnet110", "fp32-channels_last-checkpointing"),
]
LADDER = ("fp32-nchw", "fp32-channels_last", "bf16-channels_last", "fast")
CUDA_CASES = [
    *(case("cuda", m, "fast", pytest.mark.gpu, needs_cuda) for m in MODELS),
    *(case("cuda", "resnet56", s, pytest.mark.gpu, needs_cuda) for s in LADDER[:-1]),
    # the other compile modes, to keep the fastest as the default (max-autotune compiles slowly)
    case("cuda", "resnet56", "fast-reduce-overhead", pytest.mark.gpu, needs_cuda),
    case("cuda", "resnet56", "fast-max-autotune", pytest.mark.gpu, pytest.mark.slow, needs_cuda),
    # not compiled: compiling 1202 layers takes many minutes
    case("cuda", "resnet1202", "bf16-channels_last-checkpointing", pytest.mark.gpu, needs_cuda),
]


def build_step(model: str, setting: Setting, device: torch.device, batch: int = BATCH):
    """The trainer's step for ``model`` as ``setting`` says, bound to one synthetic batch."""
    torch.manual_seed(0)
    kwargs = {"activation_checkpointing": True} if setting.activation_checkpointing else {}
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    net = make_model(model, kwargs).to(device, memory_format=fmt)
    optimizer = make_optimizer(net, get_recipe("paper", batch_size=batch), device)
    amp = resolve_amp(setting.amp, device)
    step = make_step(net, optimizer, amp, None, setting.compile)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device, memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    return lambda: step(x, y, 1.0 / batch)


PEAK_RSS_SCRIPT = """
import json, sys, torch
from repro.recipes import get_recipe
from repro.train.components import make_model, make_optimizer, make_step

def status(key):  # kB in /proc/self/status
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

model, checkpointing, channels_last, batch = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
fmt = torch.channels_last if channels_last else torch.contiguous_format
net = make_model(model, {"activation_checkpointing": checkpointing}).to(memory_format=fmt)
step = make_step(net, make_optimizer(net, get_recipe("paper"), torch.device("cpu")), None, None)
x, y = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt), torch.arange(batch) % 10
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
step(x, y, 1.0 / batch)
print(json.dumps({"before_mb": before, "peak_mb": status("VmHWM")}))
"""


def peak_rss_mb(model: str, checkpointing: bool, channels_last: bool) -> dict[str, float]:
    """Resident memory (MB) of a fresh process before its first training step on CPU, and the
    peak during it (Linux: the peak is reset through /proc/self/clear_refs before the step)."""
    args = [model, str(int(checkpointing)), str(int(channels_last)), str(BATCH)]
    # glibc keeps freed blocks below its (adaptive) mmap threshold in the heap, so RSS would
    # overstate live memory; a fixed 128 KiB threshold returns freed tensors to the OS at once
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    rss["step_mb"] = rss["peak_mb"] - rss["before_mb"]
    return rss


@pytest.mark.parametrize(("device_type", "model", "setting_name"), CPU_CASES + CUDA_CASES)
def test_bench_train_step(benchmark, throughput, device_type, model, setting_name) -> None:
    device = torch.device(device_type)
    setting = SETTINGS[setting_name]
    run_step = build_step(model, setting, device)
    # CPU: ~0.3-2 s a step on 2 cores, so one step a round; CUDA: 20 steps, then one sync
    steps = 20 if device.type == "cuda" else 1

    def one_round() -> float:
        for _ in range(steps):
            loss_sum, _ = run_step()
        return float(loss_sum)  # the host read waits for the device

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        loss = benchmark.pedantic(one_round, rounds=10, iterations=1, warmup_rounds=3)
    else:
        warmup = 2 if setting.compile else 1
        loss = benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=warmup)
    assert torch.isfinite(torch.tensor(loss))
    rate = throughput(
        benchmark,
        steps * BATCH,
        device,
        model=model,
        batch=BATCH,
        settings={"name": setting_name, **asdict(setting)},
    )
    benchmark.extra_info["seconds_per_step"] = benchmark.stats.stats.mean / steps
    if device.type == "cuda":
        benchmark.extra_info["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    elif setting.activation_checkpointing and Path("/proc/self/clear_refs").exists():
        for on in (False, True):
            rss = peak_rss_mb(model, checkpointing=on, channels_last=setting.channels_last)
            benchmark.extra_info[f"peak_rss_{'with' if on else 'without'}_checkpointing"] = rss
    assert rate > 0
