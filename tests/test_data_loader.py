"""DeviceLoader: epochs are permutations, drop_last, eval order, and exact mid-epoch resume."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.data import DeviceLoader, augment, get_split, load_cifar10, normalize
from repro.errors import ReproError


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    # label = sample id so batches reveal which samples they hold
    return images, torch.arange(n)


def _epoch(loader: DeviceLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_each_epoch_is_a_permutation_and_epochs_differ() -> None:
    images, labels = _data(50)
    loader = DeviceLoader(images, labels, batch_size=8, seed=1)
    assert len(loader) == 7
    orders = []
    for epoch in range(3):
        assert loader.epoch == epoch
        batches = _epoch(loader)
        assert len(batches) == 7 and [len(y) for _, y in batches] == [8] * 6 + [2]
        for x, _ in batches:
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        order = torch.cat([y for _, y in batches])
        assert torch.equal(torch.sort(order).values, torch.arange(50))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    assert loader.epoch == 3


def test_batches_are_augmented_images_of_their_labels() -> None:
    images, labels = _data(20)
    loader = DeviceLoader(images, labels, batch_size=20, seed=4)
    ((x, y),) = _epoch(loader)
    # replay: the same generator draws the permutation, then the batch's crops and flips
    g = torch.Generator().manual_seed(4)
    perm = torch.randperm(20, generator=g)
    assert torch.equal(y, perm)
    assert torch.equal(x, augment(images[perm], g))


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "expected"),
    [(50, 8, True, 6), (48, 8, True, 6), (48, 8, False, 6), (5, 8, True, 0)],
)
def test_drop_last(n: int, bs: int, drop_last: bool, expected: int) -> None:
    loader = DeviceLoader(*_data(n), batch_size=bs, drop_last=drop_last)
    batches = _epoch(loader)
    assert len(loader) == expected == len(batches)
    assert all(len(y) == bs for _, y in batches)


def test_eval_loader_is_ordered_and_normalise_only() -> None:
    images, labels = _data(30)
    loader = DeviceLoader(images, labels, batch_size=16, train=False)
    batches = _epoch(loader)
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    assert torch.equal(torch.cat([x for x, _ in batches]), normalize(images))
    assert torch.equal(torch.cat([x for x, _ in _epoch(loader)]), normalize(images))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    bs=st.integers(1, 12),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**31),
    stop=st.integers(0, 60),
)
def test_resume_mid_epoch_yields_the_same_remaining_batches(
    n: int, bs: int, drop_last: bool, seed: int, stop: int
) -> None:
    images, labels = _data(n, seed=3)
    ref = DeviceLoader(images, labels, bs, seed=seed, drop_last=drop_last)
    steps_per_epoch = len(ref)
    expected = [b for _ in range(3) for b in _epoch(ref)]
    stop = min(stop, len(expected))

    # run `stop` steps as a trainer would (epoch loops), checkpoint through torch.save, resume
    first = DeviceLoader(images, labels, bs, seed=seed, drop_last=drop_last)
    got, state = [], None
    for _ in range(3):
        if len(got) == stop:
            break
        for batch in first:
            got.append(batch)
            if len(got) == stop:
                break
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = DeviceLoader(images, labels, bs, seed=seed + 1, drop_last=drop_last)
    resumed.load_state_dict(state)
    assert resumed.epoch == first.epoch and resumed.position == first.position
    while len(got) < len(expected):
        got.extend(resumed)
    assert len(got) == len(expected) == 3 * steps_per_epoch
    for (xa, ya), (xb, yb) in zip(got, expected):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_resume_after_last_batch_of_epoch_starts_next_epoch() -> None:
    images, labels = _data(16)
    ref = DeviceLoader(images, labels, 8, seed=2)
    _epoch(ref)
    second = _epoch(ref)
    a = DeviceLoader(images, labels, 8, seed=2)
    it = iter(a)
    next(it), next(it)  # consumed both batches; the for loop has not yet finished
    state = a.state_dict()
    b = DeviceLoader(images, labels, 8, seed=2)
    b.load_state_dict(state)
    assert _epoch(b) == [] and b.epoch == 1  # that epoch has nothing left
    got = _epoch(b)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(got, second))


def test_state_mismatch_and_bad_inputs() -> None:
    images, labels = _data(10)
    state = DeviceLoader(images, labels, 4).state_dict()
    with pytest.raises(ReproError, match="loader state is for 10 samples in batches of 4"):
        DeviceLoader(images, labels, 5).load_state_dict(state)
    with pytest.raises(ReproError, match="images must be uint8"):
        DeviceLoader(images.float(), labels, 4)
    with pytest.raises(ReproError, match="10 images but labels of shape"):
        DeviceLoader(images, labels[:3], 4)


def test_mini_train45k_loader_epoch(mini_root: Path) -> None:
    x, y = get_split(load_cifar10(mini_root), "train45k")
    loader = DeviceLoader(x, y, batch_size=128, seed=0, memory_format=torch.channels_last)
    seen = 0
    for xb, yb in loader:
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.isfinite(xb).all() and yb.max() <= 9
        seen += len(yb)
    assert seen == len(y) == 4577


@pytest.mark.gpu
def test_cuda_loader_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    images, labels = _data(40)
    cpu = _epoch(DeviceLoader(images, labels, 16, seed=9))
    gpu = _epoch(DeviceLoader(images, labels, 16, seed=9, device="cuda"))
    assert gpu[0][0].device.type == "cuda" and gpu[0][1].device.type == "cuda"
    for (xa, ya), (xb, yb) in zip(cpu, gpu):
        assert torch.equal(ya, yb.cpu()) and torch.allclose(xa, xb.cpu(), atol=1e-6)
