"""Shared benchmark conventions.

Every benchmark times whole units of work with ``benchmark.pedantic`` and records its throughput
in ``benchmark.extra_info``: ``images_per_s`` (images / mean round time) with the ``device``,
``model``, ``batch`` and ``settings`` it ran with and the intra-op thread count. The saved
JSON's ``machine_info`` adds the torch build and the GPU name (the hook below).

``REPRO_BENCH_THREADS=N`` sets the thread count: on a shared, busy CPU one thread can be several
times faster than two, because OpenMP threads then wait for each other.

Run: ``pytest tests/benchmarks --benchmark-only`` or ``nox -s bench`` (``-- --save NAME`` keeps a
baseline, ``-- --compare`` fails on a median regression over 10% against the latest one).
"""

from __future__ import annotations

import os
import platform
from typing import Any

import pytest
import torch

CUDA = torch.cuda.is_available()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """The torch build and devices next to pytest-benchmark's CPU description."""
    machine_info["torch"] = torch.__version__
    machine_info["cuda"] = torch.version.cuda if CUDA else None
    machine_info["cudnn"] = torch.backends.cudnn.version() if CUDA else None
    machine_info["gpu"] = torch.cuda.get_device_name() if CUDA else None
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["repro_bench_threads"] = os.environ.get("REPRO_BENCH_THREADS")
    machine_info["platform"] = platform.platform()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def record_throughput(benchmark: Any, images: int, device: torch.device, **info: Any) -> float:
    """Store ``images_per_s`` for ``images`` per round, plus the device and ``info``; return it."""
    rate = images / benchmark.stats.stats.mean
    benchmark.extra_info.update(
        {
            "images_per_s": rate,
            "images_per_round": images,
            "device": str(device),
            "device_name": device_name(device),
            "torch_threads": torch.get_num_threads(),
            **info,
        }
    )
    return rate


@pytest.fixture(autouse=True)
def bench_threads():
    """``REPRO_BENCH_THREADS=N``: N intra-op threads for each benchmark (restored after it)."""
    value = os.environ.get("REPRO_BENCH_THREADS", "")
    if value and not (value.isdigit() and int(value) >= 1):
        pytest.fail(f"REPRO_BENCH_THREADS must be a whole number >= 1, got {value!r}")
    before = torch.get_num_threads()
    if value:
        torch.set_num_threads(int(value))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def throughput():
    """``record_throughput`` for a benchmark (a fixture: test modules do not import conftest)."""
    return record_throughput
