"""Training metrics kept on the device (no host sync per step), and the keys of a metrics.jsonl
record (written and read by :mod:`repro.store`)."""

from __future__ import annotations

import math
from typing import TypedDict

import torch

from repro.run_config import METRIC_KEYS, TIMING_KEYS  # a metrics.jsonl record: EvalRecord

__all__ = ["METRIC_KEYS", "TIMING_KEYS", "Meter"]


class MeterState(TypedDict):
    """A :class:`Meter` in a checkpoint."""

    loss: torch.Tensor  # float64 sum
    errors: torch.Tensor  # int64 count of misclassified images
    count: int


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

    def state_dict(self) -> MeterState:
        return {"loss": self.loss.cpu(), "errors": self.errors.cpu(), "count": self.count}

    def load_state_dict(self, state: MeterState) -> None:
        self.loss = state["loss"].to(self.device, torch.float64).clone()
        self.errors = state["errors"].to(self.device, torch.int64).clone()
        self.count = int(state["count"])
