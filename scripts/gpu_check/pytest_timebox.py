"""A pytest plugin for the check's pytest runs (``-p scripts.gpu_check.pytest_timebox``).

``GPU_CHECK_PYTEST_DEADLINE`` (a ``time.time()``): no test starts after it; pytest stops between
tests, so its JUnit XML and pytest-benchmark JSON are written whole. (pytest-benchmark cannot
write its JSON when SIGINT lands inside a benchmark: the unfinished one has no rounds.)
``GPU_CHECK_PYTEST_RECORD`` (a path): each finished benchmark's name, mean and ``extra_info`` are
appended there at once, a JSON line each, so a hard stop still leaves the finished figures.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

DEADLINE_ENV, RECORD_ENV = "GPU_CHECK_PYTEST_DEADLINE", "GPU_CHECK_PYTEST_RECORD"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> bool | None:
    """Past the deadline: run no more tests (True: this item is handled, i.e. skipped unrun)."""
    deadline = os.environ.get(DEADLINE_ENV)
    if deadline and time.time() > float(deadline):
        item.session.shouldstop = f"the GPU check's time box ({DEADLINE_ENV}) has passed"
        return True
    return None


def pytest_runtest_teardown(item: pytest.Item) -> None:
    path = os.environ.get(RECORD_ENV)
    bench = getattr(item, "funcargs", {}).get("benchmark")
    stats = getattr(getattr(bench, "stats", None), "stats", None)
    if not path or stats is None or not getattr(stats, "data", None):
        return
    record = {
        "name": item.name,
        "fullname": item.nodeid,
        "stats": {"mean": stats.mean, "min": stats.min, "rounds": len(stats.data)},
        "extra_info": getattr(bench, "extra_info", {}),
    }
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
