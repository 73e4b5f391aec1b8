"""`pytest acceptance --run-dir DIR`: assert the paper's claims on a `repro reproduce` run."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-dir", default=None, help="a run directory written by repro reproduce")


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest):
    """The run under test; every acceptance test skips when no --run-dir is given."""
    from repro.store import load_matrix

    run_dir = request.config.getoption("--run-dir")
    if not run_dir:
        pytest.skip(
            "no --run-dir given: run `pytest acceptance --run-dir runs/<id>` "
            "(or `nox -s acceptance`) after `repro reproduce`"
        )
    if not (Path(run_dir) / "summary.json").is_file():
        pytest.fail(f"--run-dir {run_dir} has no summary.json: not a `repro reproduce` run")
    return load_matrix(run_dir)


@pytest.fixture(scope="session")
def policy(matrix):
    """The run's preset policy (checks, calibration, claims), built once for every test."""
    from repro.claims import policy_for

    return policy_for(matrix.preset)
