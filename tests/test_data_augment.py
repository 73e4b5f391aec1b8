"""Properties of the batched crop+flip augmentation and of normalisation, including equality of
the set of possible outputs with torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropFlipStore,
    augment,
    crop_flip,
    normalize,
    random_crop_flip,
    sample_crop_params,
)

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def _windows(images: torch.Tensor, padding: int) -> torch.Tensor:
    """All crops of each zero-padded image: [N, (2p+1)^2, C, H, W], by plain slicing."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    k = 2 * padding + 1
    return torch.stack(
        [padded[:, :, i : i + h, j : j + w] for i in range(k) for j in range(k)], dim=1
    )


@SETTINGS
@given(seed=seeds, n=st.integers(1, 8), padding=st.integers(0, 5), flip=st.booleans())
def test_output_is_a_window_of_the_padded_input(
    seed: int, n: int, padding: int, flip: bool
) -> None:
    images = _images(n, seed ^ 0x5EED)
    out = random_crop_flip(images, torch.Generator().manual_seed(seed), padding, flip)
    assert out.shape == images.shape and out.dtype == torch.uint8
    wins = _windows(images, padding)
    cand = torch.cat([wins, wins.flip(-1)], dim=1) if flip else wins
    match = (cand == out[:, None]).flatten(2).all(dim=2)  # [N, candidates]
    assert bool(match.any(dim=1).all())
    # and it is exactly the window at the drawn offsets, mirrored where drawn
    dy, dx, flipped = sample_crop_params(n, padding, flip, torch.Generator().manual_seed(seed))
    k = 2 * padding + 1
    pick = dy * k + dx
    mirrored = _windows(images.flip(-1), padding)[torch.arange(n), pick]
    expected = torch.where(flipped.view(n, 1, 1, 1), mirrored, wins[torch.arange(n), pick])
    assert torch.equal(out, expected)
    # the resident-split path gives the very same crops
    store = CropFlipStore(images, padding, flip)
    assert torch.equal(store.crop(torch.arange(n), dy, dx, flipped), out)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    assert torch.equal(
        store.random_crop(perm, g),
        random_crop_flip(images[perm], torch.Generator().manual_seed(seed), padding, flip),
    )


@SETTINGS
@given(seed=seeds, n=st.integers(1, 8))
def test_no_padding_no_flip_is_identity(seed: int, n: int) -> None:
    images = _images(n, seed)
    out = random_crop_flip(images, torch.Generator().manual_seed(seed), padding=0, flip=False)
    assert torch.equal(out, images)


@SETTINGS
@given(seed=seeds, n=st.integers(1, 8))
def test_no_padding_with_flip_is_identity_or_mirror(seed: int, n: int) -> None:
    images = _images(n, seed)
    out = random_crop_flip(images, torch.Generator().manual_seed(seed), padding=0, flip=True)
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())


def test_all_81_offsets_and_both_flips_occur_flip_rate_half() -> None:
    dy, dx, flipped = sample_crop_params(20_000, 4, True, torch.Generator().manual_seed(0))
    assert set(zip(dy.tolist(), dx.tolist())) == {(i, j) for i in range(9) for j in range(9)}
    counts = torch.bincount(dy * 9 + dx, minlength=81).double()
    assert counts.min() > 20_000 / 81 * 0.7  # roughly uniform
    assert abs(flipped.double().mean().item() - 0.5) < 0.02
    assert not sample_crop_params(100, 4, False, torch.Generator())[2].any()


def _as_set(batch: torch.Tensor) -> set[bytes]:
    return {img.contiguous().numpy().tobytes() for img in batch}


@pytest.mark.parametrize("image_seed", [0, 1])
def test_possible_outputs_equal_torchvision(image_seed: int) -> None:
    from torchvision import transforms
    from torchvision.transforms import functional as TF

    image = _images(1, image_seed)[0]
    padded = TF.pad(image, [4])
    enumerated = set()
    for i in range(9):
        for j in range(9):
            crop = TF.crop(padded, i, j, 32, 32)
            enumerated |= _as_set(torch.stack([crop, TF.hflip(crop)]))
    assert len(enumerated) == 162

    tv = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    )
    torch.manual_seed(image_seed)
    sampled_tv = _as_set(torch.stack([tv(image) for _ in range(3000)]))
    assert sampled_tv == enumerated

    ours = random_crop_flip(
        image.expand(3000, -1, -1, -1).contiguous(), torch.Generator().manual_seed(image_seed)
    )
    assert _as_set(ours) == enumerated


@SETTINGS
@given(seed=seeds, other=seeds, n=st.integers(8, 32))
def test_same_seed_same_batch_different_seed_different(seed: int, other: int, n: int) -> None:
    images = _images(n, 7)
    a = augment(images, torch.Generator().manual_seed(seed))
    b = augment(images, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    if other != seed:
        c = augment(images, torch.Generator().manual_seed(other))
        assert not torch.equal(a, c)


def test_augment_is_crop_flip_then_normalize() -> None:
    images = _images(16, 3)
    out = augment(images, torch.Generator().manual_seed(5), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ref = normalize(
        random_crop_flip(images, torch.Generator().manual_seed(5)), IMAGENET_MEAN, IMAGENET_STD
    )
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_normalize_values_and_dtype() -> None:
    images = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = normalize(images)
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    ref = (images.double() / 255 - mean.double().view(1, 3, 1, 1)) / std.double().view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out.double(), ref, atol=1e-5)
    assert normalize(images, dtype=torch.float64).dtype == torch.float64
    # matches torchvision's ToTensor + Normalize
    from torchvision.transforms import functional as TF

    tv = TF.normalize(images.float() / 255, list(CIFAR10_MEAN), list(CIFAR10_STD))
    assert torch.allclose(out, tv, atol=1e-5)


def test_padding_pixels_are_black_before_normalisation() -> None:
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    dy, dx, fl = torch.tensor([0]), torch.tensor([0]), torch.tensor([False])
    out = crop_flip(images, dy, dx, fl, padding=4)
    assert (
        out[0, :, :4].eq(0).all()
        and out[0, :, :, :4].eq(0).all()
        and out[0, :, 4:, 4:].eq(255).all()
    )


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    images = _images(64, 11)
    cpu = augment(images, torch.Generator().manual_seed(2))
    gpu = augment(images.cuda(), torch.Generator().manual_seed(2))
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)
