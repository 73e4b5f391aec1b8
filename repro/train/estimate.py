"""Time a few real training steps on this device and project a whole schedule's time and memory.

The steps are the trainer's own (same optimiser, augmentation on the device loader, AMP,
channels-last), run on random images after some warm-up steps; evaluation time is projected from
timed forward passes. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the
growth of the process's peak RSS, which is only a lower bound (None when an earlier model in the
same process already set a higher peak).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from repro.devices import amp_name, resolve_amp, resolve_device
from repro.errors import ReproError
from repro.recipes import Recipe, build_schedule, get_recipe
from repro.train.components import (
    Components,
    build_components,
    infinite_batches,
    make_model,
    model_depth,
    set_lr,
)
from repro.train.switches import resolve_compile

OFFICIAL_TRAIN = 50_000
OFFICIAL_TEST = 10_000


@dataclass(frozen=True)
class Estimate:
    """Measured step time and the projection for one model under one recipe on one device."""

    model: str
    recipe: str
    device: str
    batch_size: int
    amp: str
    channels_last: bool
    compile: str | None  # the torch.compile mode, None = eager
    activation_checkpointing: bool
    threads: int
    steps_timed: int
    step_seconds: float  # CPU: median of the timed steps; CUDA: their mean, timed as one block
    total_iterations: int
    evaluations: int
    eval_images_per_s: float
    projected_eval_seconds: float
    peak_memory_bytes: int | None
    peak_memory_kind: str

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.step_seconds

    @property
    def projected_train_seconds(self) -> float:
        return self.total_iterations * self.step_seconds

    @property
    def projected_seconds(self) -> float:
        return self.projected_train_seconds + self.projected_eval_seconds

    def to_dict(self) -> dict[str, object]:
        """Every field and derived figure (the `repro estimate --json` record)."""
        derived = ("images_per_s", "projected_train_seconds", "projected_seconds")
        return {**asdict(self), **{k: getattr(self, k) for k in derived}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def random_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded random uint8 images and labels: step time does not depend on the pixels."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return images, torch.randint(0, 10, (n,), generator=gen)


class PeakMemory:
    """Peak memory from here on: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the
    growth of the process's peak RSS, a lower bound (None if an earlier peak was higher)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            self.before = torch.cuda.memory_allocated(device)
        else:
            self.before = _max_rss_bytes()

    def read(self) -> tuple[int | None, str]:
        """(bytes or None, what was measured)."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) - self.before
            return peak, "torch.cuda.max_memory_allocated (training step)"
        grew = _max_rss_bytes() - self.before
        if grew > 0:
            return grew, "CPU peak RSS growth of this process (a lower bound)"
        return None, "n/a (an earlier model in this process set a higher peak RSS)"


def _time_steps(
    parts: Components, dev: torch.device, steps: int, warmup_steps: int, model_name: str
) -> float:
    """Seconds per training step after ``warmup_steps`` untimed ones (the compiling step is one).

    CPU: the median of the timed steps; CUDA: their mean, timed back to back as one block.
    """
    batches = infinite_batches(parts.loader)
    if parts.compiled:  # the step that compiles counts as a warm-up step, never timed
        x, y = next(batches)
        parts.step(x, y, 1.0 / y.shape[0])
        warmup_steps = max(warmup_steps - 1, 0)
    for _ in range(warmup_steps):
        x, y = next(batches)
        parts.step(x, y, 1.0 / y.shape[0])
    times = []
    _sync(dev)
    t_block = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        x, y = next(batches)
        loss, _ = parts.step(x, y, 1.0 / y.shape[0])
        times.append(time.perf_counter() - t)  # on the CPU the step has finished here
    _sync(dev)
    block_s = time.perf_counter() - t_block
    if not torch.isfinite(loss):
        raise ReproError(f"{model_name}: non-finite loss while timing")
    return block_s / steps if dev.type == "cuda" else statistics.median(times)


def _eval_throughput(
    model: torch.nn.Module,
    images: torch.Tensor,
    dev: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    eval_batch_size: int,
) -> float:
    """Images per second of a few forward passes in inference mode (the first one untimed)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    eval_n = min(eval_batch_size, images.shape[0])
    xe = images[:eval_n].to(dev).float().contiguous(memory_format=fmt)
    eval_times = []
    with (
        torch.inference_mode(),
        torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)),
    ):
        for i in range(3):
            _sync(dev)
            t = time.perf_counter()
            model(xe)
            _sync(dev)
            if i:
                eval_times.append(time.perf_counter() - t)
    return eval_n / statistics.median(eval_times)


def _on_random_images(
    model: torch.nn.Module,
    recipe: Recipe,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    compile_mode: str | None,
) -> tuple[Components, torch.Tensor]:
    """The training components on random images (a step costs the same on any images), and the
    images; the lr is cut a thousandfold to keep random-data steps tame."""
    images, labels = random_images(recipe.batch_size * 4)
    parts = build_components(
        model,
        recipe,
        images,
        labels,
        device=device,
        drop_last=True,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        compile_mode=compile_mode,
    )
    set_lr(parts.optimizer, recipe.lr * 1e-3)
    return parts, images


def estimate(
    model_name: str,
    recipe_name: str = "paper",
    device: str = "auto",
    steps: int = 10,
    warmup_steps: int = 3,
    batch_size: int | None = None,
    amp: str = "auto",
    channels_last: bool = False,
    model_kwargs: Mapping[str, object] | None = None,
    eval_batch_size: int = 1000,
    compile: str = "off",
    compile_mode: str = "default",
) -> Estimate:
    """Time ``steps`` training steps (after ``warmup_steps``) and project the full schedule.

    ``compile`` (auto | on | off; auto = on CUDA) and ``compile_mode`` act as in the trainer: the
    first warm-up step compiles, falling back to eager with a warning if that fails.
    """
    dev = resolve_device(device)
    recipe = get_recipe(recipe_name, batch_size=batch_size)
    amp_dtype = resolve_amp(amp, dev, cuda_auto=recipe.amp_auto)  # the paper's: fp32
    mode = resolve_compile(compile, compile_mode, dev.type)
    torch.manual_seed(0)
    model = make_model(model_name, model_kwargs or {})
    n_val = round(OFFICIAL_TRAIN * recipe.val_fraction)
    schedule = build_schedule(recipe, OFFICIAL_TRAIN - n_val, model_depth(model, model_name))
    memory = PeakMemory(dev)
    parts, images = _on_random_images(model, recipe, dev, amp_dtype, channels_last, mode)
    step_s = _time_steps(parts, dev, steps, warmup_steps, model_name)
    eval_ips = _eval_throughput(parts.model, images, dev, amp_dtype, channels_last, eval_batch_size)
    peak, kind = memory.read()
    evaluations = schedule.total_iterations // schedule.iterations_per_epoch + 1
    return Estimate(
        model=model_name,
        recipe=recipe.name,
        device=str(dev),
        batch_size=recipe.batch_size,
        amp=amp_name(amp_dtype),
        channels_last=channels_last,
        compile=mode,
        activation_checkpointing=bool((model_kwargs or {}).get("activation_checkpointing")),
        threads=torch.get_num_threads(),
        steps_timed=steps,
        step_seconds=step_s,
        total_iterations=schedule.total_iterations,
        evaluations=evaluations,
        eval_images_per_s=eval_ips,
        projected_eval_seconds=evaluations * (n_val + OFFICIAL_TEST) / eval_ips,
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
    )
