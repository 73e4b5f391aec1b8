"""Helpers for tests of `repro` subcommands: run one in-process, check the one-line error contract."""

from __future__ import annotations

from pathlib import Path

from repro.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`repro evaluate ARGV...` in-process: (exit status, stdout, stderr)."""
    return run_repro(capsys, "evaluate", *argv)


def run_repro(capsys, *argv: str) -> tuple[int, str, str]:
    """`repro ARGV...` (any command) in-process: (exit status, stdout, stderr)."""
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_clear_line(rc: int, out: str, err: str) -> str:
    """A failed command printed nothing on stdout and exactly one line, no traceback, on stderr."""
    assert rc != 0
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def reproduce_args(data: Path, out: Path, *extra: str) -> list[str]:
    """argv of `repro reproduce` for the core matrix at the smoke preset, plus EXTRA flags."""
    return [
        "reproduce",
        "--experiment",
        "core",
        "--preset",
        "smoke",
        "--data-root",
        str(data),
        "--out",
        str(out),
        *extra,
    ]
