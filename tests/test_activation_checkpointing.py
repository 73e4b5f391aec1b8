"""Activation checkpointing on the CIFAR nets: the same gradients and BN statistics as without it,
used only in training mode with gradients, and accepted by the trainer through --model-kwargs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from data_helpers import write_cifar10
from trainer_helpers import run_cli, tiny_args

import repro.models.cifar as cifar
from repro.models import build_model


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster on the 2 shared CPU cores, and reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pair(name: str = "resnet20", **kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = build_model(name, **kw)
    ckpt = build_model(name, activation_checkpointing=True, **kw)
    ckpt.load_state_dict(plain.state_dict())
    return plain, ckpt


def _batch(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _count_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cifar.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cifar, "checkpoint", counting)
    return calls


@pytest.mark.parametrize(
    ("name", "kw"),
    [("resnet20", {}), ("plain20", {}), ("resnet_cifar", {"depth": 14, "shortcut": "B"})],
)
def test_checkpointing_gives_identical_gradients_and_bn_statistics(name: str, kw: dict) -> None:
    plain, ckpt = _pair(name, **kw)
    x, y = _batch()
    losses = []
    for model in (plain, ckpt):
        model.train()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (pname, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        # the recomputation repeats the same kernels on the same inputs: equal to 1e-6 at worst
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-6, msg=pname)
    # running statistics updated once per step, not once more by the recomputation
    for (bname, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=bname)
    assert int(ckpt.bn1.num_batches_tracked) == 1
    assert int(ckpt.layer3[-1].bn2.num_batches_tracked) == 1


def test_checkpointing_wraps_every_block_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_checkpoints(monkeypatch)
    _, ckpt = _pair("resnet20")
    x, _ = _batch(4)
    ckpt.train()
    ckpt(x).sum().backward()
    assert len(calls) == len(ckpt.blocks()) == 9


def test_checkpointing_is_off_in_eval_mode_and_without_grad(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_checkpoints(monkeypatch)
    plain, ckpt = _pair("resnet20")
    x, _ = _batch(8)
    plain.eval()
    ckpt.eval()
    with torch.inference_mode():
        expected, got = plain(x), ckpt(x)
    assert torch.equal(got, expected)
    ckpt.train()
    with torch.no_grad():
        ckpt(x)
    assert calls == []


def test_checkpointing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_checkpoints(monkeypatch)
    model = build_model("resnet20")
    assert model.activation_checkpointing is False
    model.train()
    model(_batch(4)[0]).sum().backward()
    assert calls == []


def test_trainer_accepts_checkpointing_through_model_kwargs(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data")
    out = tmp_path / "run"
    args = tiny_args(
        data, out, "--max-steps", "3", "--model-kwargs", '{"activation_checkpointing": true}'
    )
    assert run_cli(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_kwargs"]["activation_checkpointing"] is True
    assert (out / "final.pt").is_file()


@pytest.mark.slow
def test_compiled_checkpointing_gives_the_eager_gradients_and_bn_statistics() -> None:
    plain, ckpt = _pair("resnet_cifar", depth=8)
    x, y = _batch(8)
    F.cross_entropy(plain(x), y).backward()
    F.cross_entropy(torch.compile(ckpt)(x), y).backward()
    # inductor's fused kernels round differently (measured 1.5e-7 on gradients, 4e-7 on BN
    # statistics); a second update of the statistics by the recomputation would be ~1e-1 off
    for (pname, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-5, msg=pname)
    for (bname, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=bname)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: no CUDA device here")
def test_resnet1202_step_at_batch_128_fits_a_10_gb_gpu_with_checkpointing() -> None:
    from repro.devices import resolve_amp
    from repro.recipes import get_recipe
    from repro.train.components import make_model, make_optimizer, make_step

    device = torch.device("cuda")
    peaks = {}
    for on in (True, False):
        torch.manual_seed(0)
        net = make_model("resnet1202", {"activation_checkpointing": on}).to(device)
        step = make_step(
            net, make_optimizer(net, get_recipe("paper"), device), resolve_amp("auto", device), None
        )
        x, y = torch.randn(128, 3, 32, 32, device=device), torch.arange(128, device=device) % 10
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        loss_sum, _ = step(x, y, 1 / 128)
        assert torch.isfinite(loss_sum)
        peaks[on] = torch.cuda.max_memory_allocated(device) / 2**30
        del net, step, x, y
    assert peaks[True] < 10, f"peak {peaks[True]:.1f} GiB with checkpointing"
    assert peaks[True] < 0.5 * peaks[False], peaks
