"""Layer response stds (He et al. 2016, Sec. 4.2, Fig. 7): known answers, hooks, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from repro.analysis import RunningMoments, layer_response_std, mean_response_std
from repro.models import build_model
from repro.models.cifar import IdentityPadShortcut


def cifar_net(depth: int, residual: bool) -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet_cifar" if residual else "plain_cifar", depth=depth)


def make_identity_net(depth: int, residual: bool, seed: int = 0, bias: float = 0.0) -> nn.Module:
    """Every 3x3 conv copies input channel (o mod C_in) to output channel o (centre tap = 1);
    every response BN is y = w_c * x / sqrt(1 + eps) + bias (running mean 0, var 1, eval mode)."""
    model = cifar_net(depth, residual)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                w = torch.zeros_like(m.weight)
                c_out, c_in = w.shape[:2]
                w[torch.arange(c_out), torch.arange(c_out) % c_in, 1, 1] = 1.0
                m.weight.copy_(w)
        for bn in model.response_layers():
            bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=gen))
            bn.bias.fill_(bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
    return model.eval()


def base_images(n: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Non-negative images whose 3 channels are the same plane z (so ReLU is the identity)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(n, size, size, generator=gen)
    return z[:, None].expand(n, 3, size, size).contiguous(), z.double().numpy()


def expected_stds(model: nn.Module, z: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Exact per-layer and per-channel stds of ``make_identity_net`` on ``base_images``.

    Channel c of every activation is s_c * z subsampled by 2 per stride-2 stage, so a layer with
    channel scales s on plane z_l has mean mean(s) E[z_l] and second moment mean(s^2) E[z_l^2].
    Residual blocks add the shortcut's scales (option A pads zero channels).
    """
    stds: list[float] = []
    channel: list[np.ndarray] = []

    def respond(scales: np.ndarray, bn: nn.BatchNorm2d, level: int) -> np.ndarray:
        c = bn.num_features
        out = scales[np.arange(c) % len(scales)] * bn.weight.detach().double().numpy()
        out = out / math.sqrt(1.0 + bn.eps)
        zl = z[:, :: 2**level, :: 2**level]
        m1, m2 = zl.mean(), np.square(zl).mean()
        stds.append(math.sqrt(np.square(out).mean() * m2 - (out.mean() * m1) ** 2))
        channel.append(out * zl.std())
        return out

    x = respond(np.ones(3), model.bn1, 0)
    level = 0
    for block in model.blocks():
        if block.conv1.stride[0] == 2:
            level += 1
        out = respond(respond(x, block.bn1, level), block.bn2, level)
        if block.shortcut is not None:
            sc = block.shortcut
            if isinstance(sc, IdentityPadShortcut):
                x = np.concatenate([np.zeros(sc.pad_before), x, np.zeros(sc.pad_after)])
            out = out + x
        x = out
    return stds, channel


def capture_responses(model: nn.Module, images: torch.Tensor) -> list[np.ndarray]:
    """Each response layer's output of one forward pass, as float64 numpy (the one-shot reference)."""
    seen: list[np.ndarray] = []
    handles = [
        bn.register_forward_hook(lambda m, i, o: seen.append(o.detach().double().numpy()))
        for bn in model.response_layers()
    ]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("residual", [False, True])
def test_first_stage_std_is_product_of_bn_scales_times_input_std(residual: bool) -> None:
    model = make_identity_net(8, residual)
    with torch.no_grad():  # one scale c_k per layer, the same for every channel
        for k, bn in enumerate(model.response_layers()):
            bn.weight.fill_(1.0 + 0.25 * k)
    images, z = base_images()
    result = layer_response_std(model, images, batch_size=3)
    g = 1.0 / math.sqrt(1.0 + 1e-5)
    c = [1.0 + 0.25 * k for k in range(3)]
    a = c[0] * g  # stem output scale = first block's input scale (ReLU is the identity here)
    # the block's BN2 response comes before its addition, so plain and residual agree here
    want = [a, c[1] * g * a, c[2] * c[1] * g * g * a]
    want = [w * z.std() for w in want]
    np.testing.assert_allclose(result.std[:3], want, rtol=1e-5)


@pytest.mark.parametrize("depth", [8, 14, 20])
@pytest.mark.parametrize("residual", [False, True])
def test_every_layer_std_matches_the_analytic_value(depth: int, residual: bool) -> None:
    model = make_identity_net(depth, residual, seed=depth)
    images, z = base_images(n=3)
    result = layer_response_std(model, images, batch_size=2)
    want, want_channel = expected_stds(model, z)
    assert len(result.std) == depth - 1
    np.testing.assert_allclose(result.std, want, rtol=1e-5)
    for got, exp in zip(result.channel_std, want_channel):
        np.testing.assert_allclose(got, exp, rtol=1e-5)
    assert result.mean_std == pytest.approx(sum(want) / len(want), rel=1e-5)


def test_residual_responses_differ_from_plain_only_after_the_first_addition() -> None:
    images, _ = base_images(n=2)
    plain = layer_response_std(make_identity_net(8, False, seed=1), images)
    res = layer_response_std(make_identity_net(8, True, seed=1), images)
    np.testing.assert_allclose(plain.std[:3], res.std[:3], rtol=1e-6)
    assert abs(plain.std[3] - res.std[3]) > 1e-3 * plain.std[3]


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 4), residual=st.booleans())
def test_hooks_every_3x3_layer_once_in_network_order(n: int, residual: bool) -> None:
    depth = 6 * n + 2
    model = cifar_net(depth, residual)
    result = layer_response_std(model, torch.randn(2, 3, 8, 8), batch_size=2)
    order = ["bn1"] + [f"layer{s}.{b}.bn{j}" for s in (1, 2, 3) for b in range(n) for j in (1, 2)]
    assert result.names == order
    assert len(result.std) == len(result.channel_std) == depth - 1
    widths = [16] + [w for w in (16, 32, 64) for _ in range(2 * n)]
    assert [len(c) for c in result.channel_std] == widths
    assert all(s > 0 for s in result.std)


def test_analysis_removes_hooks_restores_mode_and_leaves_bn_statistics_alone() -> None:
    model = cifar_net(8, True)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model.eval()(x)
    model.train()
    stats = [bn.running_mean.clone() for bn in model.response_layers()]
    layer_response_std(model, torch.randn(6, 3, 16, 16), batch_size=4)
    assert model.training
    assert all(not bn._forward_hooks for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))
    assert all(torch.equal(s, bn.running_mean) for s, bn in zip(stats, model.response_layers()))
    with torch.no_grad():
        assert torch.equal(before, model.eval()(x))


def test_hooks_are_removed_and_mode_restored_when_the_forward_fails() -> None:
    model = cifar_net(8, False).train()
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        layer_response_std(model, torch.randn(2, 4, 8, 8))
    assert model.training
    assert all(not bn._forward_hooks for bn in model.response_layers())


def test_streaming_over_batches_equals_one_shot_to_1e_10() -> None:
    model = make_identity_net(14, True, seed=3)
    images, _ = base_images(n=5, size=16, seed=1)
    one_shot = [r.std() for r in capture_responses(model, images)]
    for batch_size in (1, 2, 3, 100):
        result = layer_response_std(model, images, batch_size=batch_size)
        np.testing.assert_allclose(result.std, one_shot, rtol=1e-10)


def test_streaming_on_a_random_network_agrees_with_one_shot() -> None:
    model = cifar_net(8, True)
    images = torch.randn(9, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    one_shot = capture_responses(model, images)
    result = layer_response_std(model, images, batch_size=4)
    np.testing.assert_allclose(result.std, [r.std() for r in one_shot], rtol=1e-5)
    for got, r in zip(result.channel_std, one_shot):
        np.testing.assert_allclose(got, r.std(axis=(0, 2, 3)), rtol=1e-5)


def test_running_moments_are_exact_under_a_large_offset_where_float32_sums_fail() -> None:
    gen = torch.Generator().manual_seed(0)
    x = (1e4 + torch.randn(64, 4, 8, 8, generator=gen)).float()
    ref = x.double().numpy()
    acc = RunningMoments()
    for chunk in x.split(5):
        acc.update(chunk)
    assert acc.std() == pytest.approx(ref.std(), rel=1e-9)
    np.testing.assert_allclose(acc.channel_std().numpy(), ref.std(axis=(0, 2, 3)), rtol=1e-9)
    # the naive float32 sum-of-squares formula is far off on the same data
    n = x.numel()
    naive = torch.sqrt((x.square().sum() / n - (x.sum() / n) ** 2).clamp_min(0)).item()
    assert abs(naive - ref.std()) / ref.std() > 1e-2


def test_layer_std_is_exact_with_a_large_bn_bias() -> None:
    model = make_identity_net(8, False, seed=4, bias=1e4)
    images, _ = base_images(n=5, seed=2)
    one_shot = capture_responses(model, images)
    assert min(r.mean() for r in one_shot) > 1e4
    result = layer_response_std(model, images, batch_size=2)
    np.testing.assert_allclose(result.std, [r.std() for r in one_shot], rtol=1e-9)


def test_uint8_images_are_normalised_with_the_given_mean_and_std() -> None:
    model = cifar_net(8, False)
    raw = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    floats = (raw.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    a = layer_response_std(model, raw, mean=mean, std=std)
    b = layer_response_std(model, floats)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5)


def test_mean_response_std_is_the_mean_over_layers() -> None:
    assert mean_response_std([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert mean_response_std(torch.tensor([0.5, 1.5])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_response_std([])


def test_bad_arguments_are_rejected() -> None:
    model = cifar_net(8, False)
    with pytest.raises(ValueError, match="batch_size"):
        layer_response_std(model, torch.randn(2, 3, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        layer_response_std(model, torch.randn(0, 3, 8, 8))
    with pytest.raises(TypeError, match="response_layers"):
        layer_response_std(nn.Sequential(nn.Conv2d(3, 3, 3)), torch.randn(2, 3, 8, 8))


@pytest.mark.gpu
def test_cuda_accumulation_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    model = cifar_net(20, True)
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    cpu = layer_response_std(model, images, batch_size=16)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = layer_response_std(model.cuda(), images, batch_size=16)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert next(model.parameters()).is_cuda
    np.testing.assert_allclose(gpu.std, cpu.std, rtol=1e-3)
