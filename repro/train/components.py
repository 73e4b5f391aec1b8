"""What a training step is made of, built in one place for the trainer, `repro estimate` and the
tests: the model on its device (BN over chunks of ``bn_batch`` images when the recipe asks: the
paper's two GPUs, Sec. 4.2), SGD (Sec. 4.2: momentum 0.9, weight decay by the recipe's policy),
the device-resident loader and the step function (autocast, optional torch.compile with an eager
fallback)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.data import DeviceLoader
from repro.data.augment import Mean
from repro.data.normalization import CIFAR10_MEAN, CIFAR10_STD
from repro.errors import ReproError
from repro.models import build_model, use_bn_batch
from repro.recipes import BN_BATCH_AND_SYNC_BN, Recipe
from repro.train import ddp
from repro.train.switches import CUDA_GRAPH_MODES

StepFn = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


def infinite_batches(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def make_model(name: str, kwargs: Mapping[str, object]) -> nn.Module:
    """build_model with a ReproError (not a ValueError/TypeError) for a bad name or argument."""
    try:
        return build_model(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ReproError(str(exc)) from None


def model_depth(model: nn.Module, name: str) -> int | None:
    """The number of weighted layers (for the >= 110 warm-up rule)."""
    depth = getattr(model, "depth", None)
    if isinstance(depth, int):
        return depth
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else None


def decayed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the conv and fully connected layers: what ``weight_decay_policy="weights"``
    decays (BN's gamma/beta and every bias are left out)."""
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(m.weight, nn.Parameter)
    ]


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """SGD's parameter groups under the recipe's weight-decay policy: ``all`` is one group with
    the recipe's decay on every parameter (Sec. 4.2: "weight decay of 0.0001"); ``weights`` is
    the conv/fc weights with it, then every other parameter with none."""
    if recipe.weight_decay_policy == "all":
        return [{"params": list(model.parameters()), "weight_decay": recipe.weight_decay}]
    decayed = {id(p) for p in decayed_parameters(model)}
    return [
        {
            "params": [p for p in model.parameters() if id(p) in decayed],
            "weight_decay": recipe.weight_decay,
        },
        {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum and weight decay by the recipe's policy (:func:`parameter_groups`);
    fused on CUDA, foreach elsewhere."""
    kw: dict[str, bool] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(
        parameter_groups(model, recipe),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
        **kw,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """torch.compile with ``mode`` ("default" is inductor's default)."""
    return torch.compile(model, mode=None if mode == "default" else mode)  # type: ignore[return-value, unused-ignore]


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
    compile_mode: str | None = None,
) -> StepFn:
    """One SGD step: ``step(x, y, scale)`` -> (summed loss, misclassified count), both on device.

    The loss minimised is ``scale * sum(CE)``; ``scale = world_size / global batch`` makes DDP's
    gradient averaging equal the mean over the global batch. ``compile_mode``: run the model
    through torch.compile in that mode (None: eager); in a CUDA-graph mode each step starts a new
    graph generation.
    """
    device_type = next(model.parameters()).device.type
    cudagraphs = compile_mode in CUDA_GRAPH_MODES
    if compile_mode is not None:
        model = compile_model(model, compile_mode)

    def step(x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
            logits = model(x)
        loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss_sum * scale).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            (loss_sum * scale).backward()
            optimizer.step()
        return loss_sum.detach(), (logits.detach().argmax(1) != y).sum()

    return step


def first_compiled_step(
    step: StepFn,
    eager: StepFn,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
) -> tuple[StepFn, torch.Tensor, torch.Tensor]:
    """Run the first step compiled; if compiling fails, warn once, restore and redo it eagerly."""
    saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    try:
        return (step, *step(x, y, scale))
    except Exception as exc:
        warnings.warn(
            f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly",
            stacklevel=2,
        )
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        return (eager, *eager(x, y, scale))


class Components:
    """The model on its device (unwrapped), its optimiser and grad scaler, the training loader,
    and :meth:`step`, which compiles on its first call and falls back to eager if that fails."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        loader: DeviceLoader,
        eager: StepFn,
        compiled: StepFn | None,
    ) -> None:
        self.model, self.optimizer, self.scaler, self.loader = model, optimizer, scaler, loader
        self._eager = eager
        self._step = compiled or eager
        self._first_compiled = compiled is not None

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a failed compile)."""
        return self._step is not self._eager

    def step(
        self, x: torch.Tensor, y: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on the batch: (summed loss, misclassified count), both on the device."""
        if self._first_compiled:
            self._first_compiled = False
            self._step, loss, errors = first_compiled_step(
                self._step, self._eager, self.model, self.optimizer, x, y, scale
            )
            return loss, errors
        return self._step(x, y, scale)


def batch_norm_of(
    model: nn.Module, recipe: Recipe, dist: ddp.DistInfo, device: torch.device, sync_bn: bool
) -> nn.Module:
    """The model with the BatchNorm the run asks for: over chunks of ``recipe.bn_batch`` images
    of each device's batch (the paper's two GPUs, Sec. 4.2; swapped in place, same state_dict),
    SyncBatchNorm under torchrun with ``sync_bn``, else as built (each device's whole batch)."""
    if recipe.bn_batch is not None:
        if sync_bn:
            raise ReproError(BN_BATCH_AND_SYNC_BN)
        use_bn_batch(model, recipe.bn_batch)
    if sync_bn and dist.enabled:
        if device.type != "cuda":
            raise ReproError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel); drop it")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def build_components(
    model: nn.Module,
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    compile_mode: str | None = None,
    seed: int = 0,
    drop_last: bool = False,
    mean: Mean = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    dist: ddp.DistInfo | None = None,
    sync_bn: bool = False,
) -> Components:
    """Put ``model`` on ``device`` and build what trains it on the uint8 ``images``/``labels``.

    ``recipe.bn_batch`` swaps the model's BatchNorm for BN over chunks of that many images of
    each device's batch (in place, same state_dict). Under torchrun (``dist`` enabled) the step
    runs through DistributedDataParallel, with SyncBatchNorm if ``sync_bn`` (which contradicts
    ``bn_batch``: refused); the returned ``model`` is always the plain module.
    """
    dist = dist or ddp.DistInfo()
    model = batch_norm_of(model, recipe, dist, device, sync_bn)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # torch's stubs lack the (device, memory_format=) overload that Module.to accepts at run time
    model = model.to(device, memory_format=memory_format)  # type: ignore[call-overload, unused-ignore]
    optimizer = make_optimizer(model, recipe, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    loader = DeviceLoader(
        images,
        labels,
        recipe.batch_size,
        train=True,
        drop_last=drop_last,
        seed=seed,
        device=device,
        mean=mean,
        std=std,
        memory_format=memory_format,
    )
    step_model: nn.Module = model
    if dist.enabled:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    eager = make_step(step_model, optimizer, amp_dtype, scaler)
    compiled = None
    if compile_mode is not None:
        try:
            compiled = make_step(step_model, optimizer, amp_dtype, scaler, compile_mode)
        except Exception as exc:  # torch.compile itself unavailable: warn once, stay eager
            warnings.warn(f"torch.compile failed ({exc}); training eagerly", stacklevel=2)
    return Components(model, optimizer, scaler, loader, eager, compiled)
