"""SIGINT/SIGTERM during training: finish the step, write last.pt, exit with the resume command."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM: last.pt was written; ``exit_code`` is 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop looks at it between steps. A second signal gives up."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nreceived {signal.Signals(signum).name}: stopping after this step...",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def interrupted(self, iteration: int, checkpoint: str, resume: str) -> TrainingInterrupted:
        """The exception that ends the run after ``checkpoint`` was written at ``iteration``."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        return TrainingInterrupted(
            f"stopped by {name} at iteration {iteration}; {checkpoint} written. "
            f"Resume with:\n  {resume}",
            130 if signum == signal.SIGINT else 143,
        )
