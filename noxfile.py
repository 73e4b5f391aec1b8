"""Sessions: `nox -s unit` (fast tests, CPU), `nox -s lint` (ruff)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["unit", "lint"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs under; the project supports >= 3.10


def install(session: nox.Session) -> None:
    """The project with its dev extras; uv resolves torch and torchvision from the registry together."""
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Fast unit and property tests (no GPU, no slow tests), with the real-data tests when present."""
    install(session)
    session.run("pytest", "-m", "not slow and not gpu", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
