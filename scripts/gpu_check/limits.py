"""What may come back from the GPU machine: at most 8 files, at most two folders deep, at most
16 MiB each, and nothing but plain files and folders."""

from __future__ import annotations

from pathlib import Path

from scripts.gpu_check.common import LOG, MAX_BYTES, MAX_DEPTH, MAX_FILES


def shrink_log(out: Path, keep: int = MAX_BYTES - 2**20) -> bool:
    """Cut the middle out of log.txt when it is near the size limit (head and tail kept)."""
    path = out / LOG
    if not path.is_file() or path.stat().st_size <= keep:
        return False
    data = path.read_bytes()
    cut = f"\n[... {len(data) - keep} bytes of the log cut to stay under the size limit ...]\n"
    path.write_bytes(data[: keep // 4] + cut.encode() + data[-(keep - keep // 4) :])
    return True


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
