"""`--bn-batch N`: BatchNorm statistics over chunks of N images, as on the paper's two GPUs (He et
al. 2016, Sec. 4.2: "a mini-batch size of 128 on two GPUs"), with the running statistics of the
first GPU (replica / rank 0, whose buffers DataParallel and DDP keep)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from trainer_helpers import run_cli, tiny_args

from repro.models import GhostBatchNorm2d, build_model, use_bn_batch
from repro.models.ghost_bn import chunk_sizes
from repro.recipes import get_recipe
from repro.train.components import build_components

C = 3  # small layers keep these exact-equality checks fast


def _pair(bn_batch: int, seed: int = 0) -> tuple[nn.BatchNorm2d, GhostBatchNorm2d]:
    """A plain BN with non-trivial affine parameters and running stats, and its chunked copy."""
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(C)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return bn, GhostBatchNorm2d.from_batchnorm(bn, bn_batch)


def _forward_backward(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output, input grad, gamma grad, beta grad of a fixed random upstream gradient."""
    x = x.clone().requires_grad_(True)
    out = module(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * upstream).sum().backward()
    return out.detach(), x.grad, module.weight.grad, module.bias.grad  # type: ignore[union-attr]


def _two_gpus(bn: nn.BatchNorm2d, x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """One BN replica per chunk (what each GPU runs), outputs concatenated, grads summed as
    DataParallel reduces them; replica 0 is returned for its running statistics."""
    replicas = [copy.deepcopy(bn) for _ in sizes]
    x = x.clone().requires_grad_(True)
    out = torch.cat([r(c) for r, c in zip(replicas, x.split(sizes))])
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * upstream).sum().backward()
    w_grad = sum(r.weight.grad for r in replicas)
    b_grad = sum(r.bias.grad for r in replicas)
    return out.detach(), x.grad, w_grad, b_grad, replicas[0]


def test_bn_batch_equal_to_the_batch_is_plain_batchnorm_exactly() -> None:
    bn, ghost = _pair(bn_batch=16)
    x = torch.randn(16, C, 4, 4)
    for got, want in zip(_forward_backward(ghost, x), _forward_backward(bn, x)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(bn, name), rtol=0, atol=0)


def test_bn_batch_64_equals_two_gpus_of_64() -> None:
    bn, ghost = _pair(bn_batch=64)
    x = torch.randn(128, C, 4, 4) * 3 + torch.arange(128.0).view(-1, 1, 1, 1) / 64  # halves differ
    out, x_grad, w_grad, b_grad, gpu0 = _two_gpus(bn, x, [64, 64])
    got = _forward_backward(ghost, x)
    torch.testing.assert_close(got[0], out, rtol=0, atol=0)
    for g, w in zip(got[1:], (x_grad, w_grad, b_grad)):
        torch.testing.assert_close(g, w)
    # running statistics are the first GPU's: not those of the whole batch, nor of the second half
    torch.testing.assert_close(ghost.running_mean, gpu0.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(ghost.running_var, gpu0.running_var, rtol=0, atol=0)
    assert int(ghost.num_batches_tracked) == 1
    whole = copy.deepcopy(bn)
    whole(x)
    assert not torch.allclose(ghost.running_mean, whole.running_mean)
    assert not torch.allclose(out, whole(x))  # chunked BN is a different function in training


def test_eval_mode_is_plain_batchnorm_on_the_running_statistics() -> None:
    bn, ghost = _pair(bn_batch=4)
    x = torch.randn(10, C, 4, 4)
    torch.testing.assert_close(ghost.eval()(x), bn.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("batch", "sizes"),
    [(128, [64, 64]), (100, [64, 36]), (65, [65]), (129, [64, 65]), (40, [40]), (9, [4, 5])],
)
def test_chunks_are_bn_batch_images_then_the_remainder_and_a_single_image_joins_its_neighbour(
    batch: int, sizes: list[int]
) -> None:
    bn_batch = 4 if batch == 9 else 64
    assert chunk_sizes(batch, bn_batch) == sizes


def test_the_last_short_batch_is_chunks_of_n_and_a_remainder_as_uneven_gpus() -> None:
    bn, ghost = _pair(bn_batch=4)
    x = torch.randn(10, C, 4, 4)
    out, *_ = _two_gpus(bn, x, [4, 4, 2])
    torch.testing.assert_close(ghost(x), out, rtol=0, atol=0)


def test_a_one_image_remainder_trains_merged_into_the_previous_chunk() -> None:
    bn, ghost = _pair(bn_batch=4)
    x = torch.randn(9, C, 1, 1)  # BN of one 1x1 image would raise in training
    out, *_ = _two_gpus(bn, x, [4, 5])
    got = ghost(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, out, rtol=0, atol=0)


def test_channels_last_input_stays_channels_last_with_the_same_values() -> None:
    bn, ghost = _pair(bn_batch=4)
    x = torch.randn(8, C, 4, 4)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    out = ghost(nhwc)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, copy.deepcopy(ghost)(x))


def test_swapping_keeps_every_state_dict_key_and_shape_and_the_response_layers() -> None:
    torch.manual_seed(0)
    net = build_model("resnet20", shortcut="B")  # projection shortcuts hold a BN too
    plain_keys = {k: v.shape for k, v in net.state_dict().items()}
    assert use_bn_batch(net, 64) == sum(1 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert {k: v.shape for k, v in net.state_dict().items()} == plain_keys
    assert all(type(m) is not nn.BatchNorm2d for m in net.modules())
    assert all(isinstance(m, GhostBatchNorm2d) for m in net.response_layers())
    reader = build_model("resnet20", shortcut="B")
    reader.load_state_dict(net.state_dict())  # strict: any checkpoint reader sees a plain net
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(reader.eval()(x), net.eval()(x), rtol=0, atol=0)


def test_build_components_applies_the_recipes_bn_batch_and_only_then() -> None:
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (32,))
    cpu = torch.device("cpu")
    for recipe, want in ((get_recipe("paper", batch_size=16), 64), (get_recipe("common"), None)):
        net = build_model("resnet_cifar", depth=8)
        parts = build_components(net, recipe, images, labels, device=cpu)
        bns = [m for m in parts.model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert [getattr(m, "bn_batch", None) for m in bns] == [want] * len(bns)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bn-batch", "0"], "--bn-batch must be >= 2"),
        (["--bn-batch", "1"], "--bn-batch must be >= 2"),
        (["--bn-batch", "many"], "--bn-batch must be a number of images"),
        (["--bn-batch", "200"], "--bn-batch 200 is larger than the batch size 16"),
        (["--bn-batch", "8", "--sync-bn"], "--sync-bn and --bn-batch contradict"),
        (["--sync-bn"], "--sync-bn and --bn-batch contradict"),  # paper-val's own 64
    ],
)
def test_bad_bn_batch_is_one_line_naming_the_flag_and_writes_nothing(
    synthetic_cifar: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert run_cli(tiny_args(synthetic_cifar, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_bn_batch_off_and_sync_bn_together_are_accepted(synthetic_cifar: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = tiny_args(synthetic_cifar, out, "--bn-batch", "off", "--sync-bn", "--max-steps", "1")
    assert run_cli(args) == 0


@pytest.mark.slow
def test_bn_batch_compiles_on_the_cpu_with_the_eager_result() -> None:
    bn, ghost = _pair(bn_batch=4)
    compiled = torch.compile(copy.deepcopy(ghost))
    for batch in (8, 10, 9):  # full chunks, a remainder, a merged single image
        x = torch.randn(batch, C, 4, 4)
        torch.testing.assert_close(compiled(x), copy.deepcopy(ghost)(x), rtol=1e-5, atol=1e-5)
