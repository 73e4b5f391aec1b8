"""Read the machine-readable baselines in the project's ``baselines/`` folder (each names its source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.fileio import read_json

BASELINES_DIR = Path(__file__).resolve().parents[1] / "baselines"


def load_baseline(name: str) -> dict[str, Any]:
    """The parsed ``baselines/<name>.json``; ReproError naming the file if it is missing or bad."""
    path = BASELINES_DIR / f"{name}.json"
    if not path.is_file():
        raise ReproError(
            f"baseline file {path} is missing: run from a checkout of resnet-repro "
            "(pip install -e .) so that baselines/ is present"
        )
    try:
        return read_json(path)
    except ReproError as exc:
        raise ReproError(f"baseline {exc}; restore it from the repository (git checkout)") from None
