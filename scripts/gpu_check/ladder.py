"""Stage 2: the speed ladder. ResNet-56 at batch 128 trained and evaluated by the trainer's own
components (``build_components``: the device loader with the paper's crop and flip, SGD fused on
CUDA, autocast, torch.compile with its eager fallback; ``evaluate``), one knob added per rung,
on a 50,000-image set tiled from the data present. The eager rungs share one child process;
each compile mode gets its own, killed at the stage's deadline ("did not finish within ...")."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from scripts.gpu_check.common import (
    Context,
    Sizes,
    no_figures,
    read_stage,
    run_child,
    update_stage,
)


@dataclass(frozen=True)
class Rung:
    name: str
    channels_last: bool
    amp: str  # --amp: off | bf16
    compile: str | None  # a torch.compile mode, None = eager

    def train_flags(self) -> list[str]:
        """The `repro train` flags of this path (stage 4 trains with the fastest rung's)."""
        flags = ["--channels-last", "on" if self.channels_last else "off", "--amp", self.amp]
        if self.compile is None:
            return [*flags, "--compile", "off"]
        return [*flags, "--compile", "on", "--compile-mode", self.compile]


RUNGS = (
    Rung("fp32-nchw", False, "off", None),
    Rung("fp32-channels_last", True, "off", None),
    Rung("bf16-channels_last", True, "bf16", None),
    Rung("bf16-channels_last-compile-default", True, "bf16", "default"),
    Rung("bf16-channels_last-compile-reduce-overhead", True, "bf16", "reduce-overhead"),
    Rung("bf16-channels_last-compile-max-autotune", True, "bf16", "max-autotune"),
)
BY_NAME = {r.name: r for r in RUNGS}
GROUPS = ([r.name for r in RUNGS if r.compile is None], *([r.name] for r in RUNGS if r.compile))


def tiled_data(ctx: Context) -> tuple[Any, Any, str]:
    """The training images present, repeated up to ``sizes.tiled_images`` (random images when
    there are none, said so), with a description."""

    from repro.data import load_cifar10, resolve_data_root
    from repro.errors import ReproError
    from repro.train.estimate import random_images

    n = ctx.sizes.tiled_images
    try:
        data = load_cifar10(resolve_data_root(ctx.data_root or None))
        images, labels = data.train_images, data.train_labels
        what = f"{len(labels)} training images of {data.root}, tiled to {n}"
    except ReproError as exc:
        images, labels = random_images(n)
        what = f"{n} random images (no data: {exc})"
    reps = -(-n // len(labels))
    return images.repeat(reps, 1, 1, 1)[:n], labels.repeat(reps)[:n], what


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_train(rung: Rung, sizes: Sizes, images: Any, labels: Any, device: Any) -> Any:
    """Images/s of the trainer's step on the tiled set: the first step (compiling) and 5 warm-up
    steps untimed, then blocks of 10 steps until ``window_s`` or one epoch has passed."""
    import torch

    from repro.devices import resolve_amp
    from repro.recipes import get_recipe
    from repro.train.components import build_components, infinite_batches, make_model, set_lr

    torch.manual_seed(0)
    recipe = get_recipe("common", batch_size=sizes.batch)
    net = make_model(sizes.ladder_model, dict(sizes.ladder_kwargs))
    parts = build_components(
        net,
        recipe,
        images,
        labels,
        device=device,
        amp_dtype=resolve_amp(rung.amp, device),
        channels_last=rung.channels_last,
        compile_mode=rung.compile,
        drop_last=True,
    )
    set_lr(parts.optimizer, recipe.lr * 1e-3)  # as `repro estimate`: tame steps, the same cost
    batches = infinite_batches(parts.loader)
    t = time.perf_counter()
    for _ in range(6):
        x, y = next(batches)
        loss, _ = parts.step(x, y, 1.0 / y.shape[0])
    _sync(device)
    warm_s = time.perf_counter() - t
    epoch_steps, steps = len(labels) // sizes.batch, 0
    t = time.perf_counter()
    while steps < epoch_steps and (time.perf_counter() - t < sizes.window_s or steps == 0):
        for _ in range(min(10, epoch_steps - steps)):
            x, y = next(batches)
            loss, _ = parts.step(x, y, 1.0 / y.shape[0])
        steps += min(10, epoch_steps - steps)
        _sync(device)
    seconds = time.perf_counter() - t
    record = {
        "train_images_per_s": steps * sizes.batch / seconds,
        "steps_timed": steps,
        "first_6_steps_s": warm_s,  # compiling included
        "compiled": parts.compiled,
        "loss_finite": bool(torch.isfinite(loss)),
    }
    return parts.model, record


def measure_eval(rung: Rung, model: Any, sizes: Sizes, images: Any, labels: Any, device: Any):
    """Images/s of the trainer's ``evaluate`` over the tiled set, after one untimed batch.

    The trainer evaluates the uncompiled model, so a compile rung's evaluation would repeat the
    bf16 rung's figure: it is not measured (its time goes to the next compile mode)."""
    from repro.data import CIFAR10_MEAN, CIFAR10_STD
    from repro.evaluate import evaluate

    if rung.compile is not None:
        return {"eval_note": "not measured: the trainer evaluates uncompiled (the bf16 rung)"}
    kw = {"batch_size": sizes.eval_batch, "device": device, "channels_last": rung.channels_last}
    n = sizes.eval_batch
    evaluate(model, images[:n], labels[:n], CIFAR10_MEAN, CIFAR10_STD, amp=rung.amp, **kw)
    t = time.perf_counter()
    evaluate(model, images, labels, CIFAR10_MEAN, CIFAR10_STD, amp=rung.amp, **kw)
    return {"eval_images_per_s": len(labels) / (time.perf_counter() - t)}


def set_rung(ctx: Context, name: str, **fields: Any) -> None:
    rungs = read_stage(ctx.out, "ladder").get("rungs", {})
    rungs[name] = {**rungs.get(name, {}), **fields}
    update_stage(ctx.out, "ladder", rungs=rungs)


def run_rungs(ctx: Context, names: list[str]) -> None:
    """The child process: measure each named rung, recording it as soon as it has a figure."""
    import torch

    from repro.devices import resolve_device

    device = resolve_device(ctx.sizes.device)
    images, labels, what = tiled_data(ctx)
    update_stage(ctx.out, "ladder", data=what)
    for name in names:
        rung = BY_NAME[name]
        set_rung(ctx, name, status="running")
        try:
            model, record = measure_train(rung, ctx.sizes, images, labels, device)
            set_rung(ctx, name, **record)
            set_rung(ctx, name, **measure_eval(rung, model, ctx.sizes, images, labels, device))
            del model
            if rung.compile and not record["compiled"]:
                set_rung(ctx, name, status="failed", error="compiling failed: ran eagerly")
            else:
                set_rung(ctx, name, status="ok")
        except Exception as exc:
            set_rung(ctx, name, status="failed", error=f"{type(exc).__name__}: {exc}"[:400])
        if device.type == "cuda":
            torch.cuda.empty_cache()


def stage_ladder(ctx: Context, child_args: list[str]) -> None:
    """Run the rung groups in child processes, each within what is left of the budget; then
    name the fastest path (stage 4 trains with it)."""
    s = ctx.sizes
    update_stage(
        ctx.out,
        "ladder",
        model=s.ladder_model,
        model_kwargs=s.ladder_kwargs,
        batch=s.batch,
        window_s=s.window_s,
        rungs={r.name: {"status": "not run", "train_flags": r.train_flags()} for r in RUNGS},
    )
    for group in GROUPS:
        left = ctx.remaining()
        if BY_NAME[group[0]].compile is not None:
            left = min(left, s.compile_rung_s)
        rc = run_child(
            [sys.executable, "-m", "scripts.gpu_check", "rungs", *group, *child_args], left
        )
        for name in group:
            status = read_stage(ctx.out, "ladder")["rungs"][name].get("status")
            if status in ("ok", "failed"):
                continue
            if left <= 1:
                why = "not run: no time left in the stage's budget"
            elif rc is None:
                why = f"did not finish within its {left:.0f} s (compiling included)"
            else:
                why = f"the child process ended with exit status {rc}"
            set_rung(ctx, name, status="not finished", error=why)
    rungs = read_stage(ctx.out, "ladder")["rungs"]
    base = rungs[RUNGS[0].name].get("train_images_per_s")
    for name, r in rungs.items():
        if base and r.get("train_images_per_s"):
            set_rung(ctx, name, train_speedup=r["train_images_per_s"] / base)
    no_figures("rung", rungs)
    done = {n: r for n, r in rungs.items() if r.get("status") == "ok"}
    if done:
        fastest = max(done, key=lambda n: done[n]["train_images_per_s"])
        update_stage(ctx.out, "ladder", fastest=fastest)
