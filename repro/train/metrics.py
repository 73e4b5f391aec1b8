"""Training metrics kept on the device (no host sync per step) and the metrics.jsonl file."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

METRIC_KEYS: tuple[str, ...] = (
    "epoch",
    "iteration",
    "lr",
    "train_loss",
    "train_error",
    "val_loss",
    "val_error",
    "test_loss",
    "test_error",
    "seconds",
    "images_per_s",
)
TIMING_KEYS: tuple[str, ...] = ("seconds", "images_per_s")


class Meter:
    """Sums of loss and misclassified images over training steps, held in device tensors.

    ``add`` queues two tiny device additions; nothing is read back until :meth:`read`.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.errors = torch.zeros((), dtype=torch.int64, device=self.device)
        self.count = 0  # images, known on the host without a sync

    def add(self, loss_sum: torch.Tensor, errors: torch.Tensor, n: int) -> None:
        self.loss += loss_sum.detach()
        self.errors += errors.detach()
        self.count += int(n)

    def packed(self) -> torch.Tensor:
        """[loss sum, errors, count] as one float64 tensor (one all-reduce in DDP)."""
        return torch.stack(
            [self.loss, self.errors.to(torch.float64), self.loss.new_tensor(float(self.count))]
        )

    @staticmethod
    def read(packed: torch.Tensor) -> tuple[float, float, bool]:
        """(mean loss, error percent, finite) from :meth:`packed` - one host sync."""
        loss, errors, count = packed.tolist()
        if count == 0:
            return math.nan, math.nan, True
        return loss / count, 100.0 * errors / count, math.isfinite(loss)

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss.cpu(), "errors": self.errors.cpu(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss = state["loss"].to(self.device, torch.float64).clone()
        self.errors = state["errors"].to(self.device, torch.int64).clone()
        self.count = int(state["count"])


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync, so a kill leaves at most one partial last line."""
    line = json.dumps(record, allow_nan=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a metrics.jsonl (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: Path, iteration: int) -> int:
    """Keep only the records up to ``iteration`` (atomic rewrite); returns how many remain."""
    kept = [r for r in read_metrics(path) if int(r.get("iteration", -1)) <= iteration]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(kept)
