"""Progress display: a tqdm bar per epoch on a terminal, plain log lines otherwise.

The bar's postfix (loss, error, img/s, ETA of the whole run) needs values from the device, so the
trainer updates it only at its sync points (every ``log_every`` steps), never per step.
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Per-epoch bars (terminal) or nothing but :meth:`write` lines (pipes, logs); off if quiet."""

    def __init__(self, enabled: bool, total: int, iterations_per_epoch: int) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stdout.isatty()
        self.total, self.ipe = total, iterations_per_epoch
        self.epochs = math.ceil(total / iterations_per_epoch)
        self.bar: tqdm | None = None
        self.t0, self.it0, self.iteration = time.perf_counter(), 0, 0

    def _open(self, iteration: int) -> None:
        epoch = iteration // self.ipe
        self.bar = tqdm(
            total=min(self.ipe, self.total - epoch * self.ipe),
            initial=iteration - epoch * self.ipe,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
            file=sys.stdout,
        )

    def start(self, iteration: int) -> None:
        self.t0, self.it0, self.iteration = time.perf_counter(), iteration, iteration
        if self.tty and iteration < self.total:
            self._open(iteration)

    def advance(self, iteration: int) -> None:
        self.iteration = iteration
        if self.bar is None:
            return
        self.bar.update(1)
        if iteration % self.ipe == 0 or iteration >= self.total:
            self.bar.close()
            self.bar = None
            if iteration < self.total:
                self._open(iteration)

    def postfix(self, loss: float, error: float, images_per_s: float) -> None:
        if self.bar is None:
            return
        done = self.iteration - self.it0
        eta = (self.total - self.iteration) * (time.perf_counter() - self.t0) / max(done, 1)
        self.bar.set_postfix(
            loss=f"{loss:.3f}",
            err=f"{error:.1f}%",
            img_s=f"{images_per_s:.0f}",
            eta=_hms(eta),
            refresh=False,
        )

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
