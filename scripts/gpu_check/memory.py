"""Stage 3: peak memory and step time of ResNet-1202 at batch 128 with and without activation
checkpointing, in fp32 (the paper's precision) and bf16, through ``repro estimate``'s
``estimate()`` (the trainer's step on random images; peak = ``torch.cuda.max_memory_allocated``
above what was allocated before; on the CPU the growth of the peak RSS, a lower bound, which is
why each precision measures the smaller, checkpointed case first)."""

from __future__ import annotations

from typing import Any

from scripts.gpu_check.common import Context, no_figures, read_stage, update_stage

CASES = (("off", True), ("off", False), ("bf16", True), ("bf16", False))  # (amp, checkpointing)


def case_name(amp: str, checkpointing: bool) -> str:
    return (
        f"{'fp32' if amp == 'off' else amp}-{'with' if checkpointing else 'without'}-checkpointing"
    )


def measure(ctx: Context, amp: str, checkpointing: bool) -> dict[str, Any]:
    from repro.train.estimate import estimate

    s = ctx.sizes
    e = estimate(
        s.memory_model,
        "common",  # BN over the whole batch of 128 (the paper recipe's BN over 64 is stage 4's)
        device=s.device,
        steps=3,
        warmup_steps=1,
        batch_size=s.batch,
        amp=amp,
        channels_last=True,
        model_kwargs={**s.memory_kwargs, "activation_checkpointing": checkpointing},
        eval_batch_size=s.batch,
        compile="off",  # compiling 1202 layers takes minutes
    )
    peak = e.peak_memory_bytes
    return {
        "peak_memory_gib": None if peak is None else peak / 2**30,
        "peak_memory_kind": e.peak_memory_kind,
        "step_seconds": e.step_seconds,
        "train_images_per_s": e.images_per_s,
    }


def stage_memory(ctx: Context) -> None:
    import torch

    s = ctx.sizes
    update_stage(
        ctx.out,
        "memory",
        model=s.memory_model,
        model_kwargs=s.memory_kwargs,
        batch=s.batch,
        cases={case_name(*c): {"status": "not run"} for c in CASES},
    )
    for amp, checkpointing in CASES:
        name = case_name(amp, checkpointing)
        cases = read_stage(ctx.out, "memory")["cases"]
        if ctx.remaining() <= 1:
            cases[name] = {"status": "not run", "error": "no time left in the stage's budget"}
        else:
            try:
                cases[name] = {"status": "ok", **measure(ctx, amp, checkpointing)}
            except torch.cuda.OutOfMemoryError as exc:
                cases[name] = {"status": "out of memory", "error": str(exc).splitlines()[0]}
            except Exception as exc:
                cases[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:400]}
        update_stage(ctx.out, "memory", cases=cases)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    no_figures("case", read_stage(ctx.out, "memory")["cases"])
