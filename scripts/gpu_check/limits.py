"""What may come back from the GPU machine: at most 8 files, at most two folders deep, at most
16 MiB each, and nothing but plain files and folders."""

from __future__ import annotations

from pathlib import Path

from scripts.gpu_check.common import MAX_BYTES, MAX_DEPTH, MAX_FILES


def limit_problems(out: Path) -> list[str]:
    """Every way ``out`` breaks the limits (empty: it keeps them)."""
    if not out.is_dir():
        return [f"{out} is not a folder"]
    problems, files = [], []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            problems.append(f"{rel} is not a plain file or folder")
        elif path.is_file():
            files.append(rel)
            if len(rel.parts) - 1 > MAX_DEPTH:
                problems.append(f"{rel} is {len(rel.parts) - 1} folders deep (at most {MAX_DEPTH})")
            if path.stat().st_size > MAX_BYTES:
                problems.append(f"{rel} has {path.stat().st_size} bytes (at most {MAX_BYTES})")
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files (at most {MAX_FILES}): {', '.join(map(str, files))}")
    return problems
