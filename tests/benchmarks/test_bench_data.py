"""Throughput of one epoch of the mini training set (5,085 images, batch 128): this repo's
DeviceLoader + batched augmentation vs the classic torchvision pipeline (PIL RandomCrop,
RandomHorizontalFlip, ToTensor, Normalize, DataLoader with 2 workers).

Run: ``python -m pytest tests/benchmarks/test_bench_data.py --benchmark-only``. Batches/s and
images/s land in ``benchmark.extra_info``; the classic test also records the speed-up ratio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.classic import classic_loader
from repro.data import DeviceLoader, load_cifar10

BATCH = 128
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def mini_train(mini_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_cifar10(mini_root)
    return data.train_images, data.train_labels


def _record(benchmark, name: str, n_images: int, n_batches: int) -> float:
    mean_s = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        {
            "images": n_images,
            "batches": n_batches,
            "batches_per_s": n_batches / mean_s,
            "images_per_s": n_images / mean_s,
        }
    )
    RESULTS[name] = n_batches / mean_s
    return n_batches / mean_s


@pytest.mark.parametrize("threads", [1, 0], ids=["1-thread", "default-threads"])
def test_bench_device_loader_cpu(benchmark, mini_train, threads: int) -> None:
    images, labels = mini_train
    loader = DeviceLoader(images, labels, BATCH, seed=0)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)

    def epoch() -> int:
        return sum(int(y.numel()) for _, y in loader)

    try:
        seen = benchmark.pedantic(epoch, rounds=5, iterations=1, warmup_rounds=1)
    finally:
        torch.set_num_threads(before)
    assert seen == len(labels)
    rate = _record(benchmark, f"loader-{threads}", len(labels), len(loader))
    benchmark.extra_info["torch_threads"] = threads or before
    assert rate > 0


def test_bench_classic_pipeline(benchmark, mini_train) -> None:
    images, labels = mini_train
    loader = classic_loader(images, labels, BATCH, workers=2, pin_memory=False)

    def epoch() -> int:
        return sum(int(y.numel()) for _, y in loader)

    seen = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    assert seen == len(labels)
    rate = _record(benchmark, "classic", len(labels), len(loader))
    for key in ("loader-1", "loader-0"):
        if key in RESULTS:
            benchmark.extra_info[f"speedup_{key}"] = RESULTS[key] / rate
    print("\nbatches/s:", {k: round(v, 1) for k, v in RESULTS.items()})
