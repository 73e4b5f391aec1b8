"""Multi-process data parallel training under ``torchrun``: rank info, process group, reductions.

Every rank holds the whole data set and draws the same global batch (same seed), then trains on
positions ``rank::world_size`` of it, so the global batch is the recipe's batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from repro.errors import ReproError
from repro.run_config import RunConfig


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank (all 0 / 1 / 0 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (a single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on CPU."""
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def bn_group(per_rank: int, bn_batch: int) -> str:
    """How many images one BatchNorm normalises over in a process's batch of ``per_rank``
    (``bn_batch`` 0: the whole of it)."""
    if not bn_batch or per_rank <= bn_batch:
        return f"{per_rank}"
    rest = per_rank % bn_batch
    return f"{bn_batch}" + (f" (and a remainder of {rest})" if rest else "")


def check_world_size(recorded: RunConfig, info: DistInfo, where: Path) -> str | None:
    """Resume a checkpoint written by another number of processes only where training stays the
    same. Every rank draws the same global batch in the same order, and model, optimiser and RNG
    states are one copy, so only BatchNorm sees the world size: each process normalises over its
    batch / world size images (in chunks of the recipe's ``bn_batch``, when set), so another
    count would change the run mid-way: refused, one line. Allowed, with a note, where BN is the
    same either way: ``--sync-bn`` (the whole batch), or ``bn_batch`` chunks that divide both
    per-process batches (not bit-identical: sums reduce in another order). None: same size."""
    old, new = recorded.world_size or 1, info.world_size
    if old == new:
        return None
    batch, chunk = recorded.batch_size or 0, recorded.bn_batch or 0
    same_chunks = chunk > 0 and all((batch // n) % chunk == 0 for n in (old, new))
    if recorded.sync_bn or same_chunks:
        over = f"chunks of {chunk} images" if same_chunks else f"the whole batch of {batch}"
        return (
            f"resuming a run of world size {old} with world size {new}: BatchNorm normalises "
            f"over {over} either way (not bit-identical: sums reduce in another order"
            + (", and other images share a chunk)" if same_chunks else ")")
        )
    how = (
        "`repro train` in one process"
        if old == 1
        else f"torchrun with {old} processes (--nnodes x --nproc_per_node = {old})"
    )
    raise ReproError(
        f"{where} was trained with world size {old} and this is world size {new}: BatchNorm "
        f"would normalise over {bn_group(batch // new, chunk)} images at a time instead of "
        f"{bn_group(batch // old, chunk)}, changing the run mid-way; resume it with {how}, or "
        "start a new --out"
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """A reduced copy of ``t`` (summed over ranks); ``t`` itself is left alone."""
    out = t.clone()
    if info.enabled:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (every rank must call this at the same point)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def max_rank_difference(module: nn.Module, info: DistInfo) -> float:
    """Largest |difference| between any rank's floating-point state and rank 0's (0.0 alone)."""
    if not info.enabled:
        return 0.0
    tensors = [
        t.detach().double().flatten() for t in module.state_dict().values() if t.is_floating_point()
    ]
    mine = torch.cat(tensors)
    ref = mine.clone()
    dist.broadcast(ref, src=0)
    diff = (mine - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())
