"""Read a Caffe training log (``caffe train ... 2>&1 | tee train.log``) as rows for the importer.

The Caffe reruns of He et al. (2016) printed, through glog, lines such as::

    I0115 10:00:00.000000  1234 solver.cpp:228] Iteration 100, loss = 2.1
    I0115 10:00:00.000000  1234 solver.cpp:244]     Train net output #0: loss = 2.1 (* 1 = 2.1 loss)
    I0115 10:00:00.000000  1234 solver.cpp:646] Iteration 100, lr = 0.1
    I0115 10:00:00.000000  1234 solver.cpp:404] Iteration 32000, Testing net (#0)
    I0115 10:00:00.000000  1234 solver.cpp:471]     Test net output #0: accuracy = 0.9123
    I0115 10:00:00.000000  1234 solver.cpp:471]     Test net output #1: loss = 0.35 (* 1 = 0.35 loss)

One row per test: ``iteration``, ``test_acc`` (a 0-1 fraction, as Caffe prints it) and
``test_loss`` from the test outputs whose names contain ``acc`` / ``loss``, with the last
``train_loss`` (and ``train_acc`` if the net outputs one) and ``lr`` printed at or before it.
"""

from __future__ import annotations

import re
from pathlib import Path

from repro.errors import ReproError

_ITER = re.compile(r"\] Iteration (\d+)(?: \(.*?\))?, (?:loss = (\S+)|lr = (\S+)|Testing net)")
_OUTPUT = re.compile(r"\] +(Train|Test) net output #\d+: (\S+) = (\S+)")
SNIFF_BYTES = 65536


def looks_like_caffe(path: Path) -> bool:
    """Whether the start of ``path`` has Caffe solver lines."""
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES).decode("utf-8", "replace")
    except OSError:
        return False
    return "solver.cpp" in head and "Iteration" in head


def _role(phase: str, name: str) -> str | None:
    kind = "acc" if "acc" in name.lower() else "loss" if "loss" in name.lower() else None
    return None if kind is None else f"{phase.lower()}_{kind}"


def caffe_rows(text: str, path: Path) -> list[dict[str, str | int]]:
    """One row per test of the log (see the module doc); ReproError if it has no test lines."""
    rows: list[dict[str, str | int]] = []
    train: dict[str, str] = {}  # the latest training loss and lr (as the log prints them)
    testing: dict[str, str | int] | None = None
    iteration = 0
    for line in text.splitlines():
        if m := _ITER.search(line):
            iteration = int(m.group(1))
            testing = None
            if m.group(2) is not None:
                train["train_loss"] = m.group(2)
            elif m.group(3) is not None:
                train["lr"] = m.group(3)
            else:
                testing = {"iteration": iteration, **train}
                rows.append(testing)
        elif m := _OUTPUT.search(line):
            role = _role(m.group(1), m.group(2))
            if role is None:
                continue
            if m.group(1) == "Test" and testing is not None:
                testing.setdefault(role, m.group(3))
            elif m.group(1) == "Train":
                train[role] = m.group(3)
    if not rows:
        raise ReproError(
            f"{path}: no 'Iteration N, Testing net' lines: not a Caffe training log with tests "
            "(pass --format for another format)"
        )
    return rows
