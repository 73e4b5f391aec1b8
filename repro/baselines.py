"""Read the machine-readable baselines in the project's ``baselines/`` folder (each names its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from repro.errors import ReproError

BASELINES_DIR = Path(__file__).resolve().parents[1] / "baselines"


def load_baseline(name: str) -> dict[str, Any]:
    """The parsed ``baselines/<name>.json``."""
    path = BASELINES_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReproError(
            f"baseline file {path} is missing: run from a checkout of resnet-repro "
            "(pip install -e .) so that baselines/ is present"
        ) from None
    except json.JSONDecodeError as exc:
        raise ReproError(f"baseline file {path} is not valid JSON: {exc}") from None
