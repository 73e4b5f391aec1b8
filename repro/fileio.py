"""Files that are never seen half-written: atomic writes, JSON objects and JSON-lines logs.

One policy for a JSON-lines file (``metrics.jsonl``): records are appended one line at a time and
fsync'ed, so a kill leaves at most one torn *last* line, without its newline. Readers skip such a
torn last line silently (the trainer rewrites the file on resume); any other line that is not a
JSON object is reported as a problem, never guessed at.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from repro.errors import ReproError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(tmp_path)`` into a temp file beside it, fsync, then rename.

    A reader sees the old file or the new one, never a part; a failed write leaves no temp file,
    and a full disk (or a file-size limit) is one ReproError that says the old file is intact.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        try:  # mkstemp makes 0600; the file gets what open() would give it: 0666 less the umask
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, file-size limit, permissions
            raise ReproError(
                f"cannot write {path} ({exc.strerror or exc}); its previous version, if any, is "
                "intact: free disk space or fix the folder's permissions, then run it again"
            ) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_KINDS = (
    (stat.S_ISDIR, "is a folder, not a file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a file"),
    (stat.S_ISCHR, "is a character device (like /dev/zero), not a file"),
    (stat.S_ISBLK, "is a block device, not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
)


def path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file to read, as the end of a sentence that starts with its
    name ("does not exist", "is a symbolic link loop", "is a FIFO ..."); None for a regular file
    (or a symbolic link to one)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (a link that leads back to itself), not a file"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return (
                "is a symbolic link to nothing (its target does not exist)"
                if path.is_symlink()
                else "does not exist"
            )
        if exc.errno == errno.EACCES:
            return "cannot be read: permission denied"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "is not a regular file")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (NaN allowed, as Python writes it), atomically."""
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from ``path``; ReproError naming the file otherwise."""
    path = Path(path)
    problem = path_problem(path)
    if problem:  # a FIFO would block and /dev/zero fill the memory: refused before reading
        raise ReproError(f"{path} {problem}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(f"{path} cannot be read ({exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or a number too long to parse
        raise ReproError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ReproError(f"{path} does not hold a JSON object")
    return obj


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON-object lines of ``path`` and the problems met (see the module docstring)."""
    path = Path(path)
    problem = path_problem(path)
    if problem:
        return [], [
            f"{path.name} is missing" if problem == "does not exist" else f"{path.name} {problem}"
        ]
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline, else an unfinished last line
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            problems.append(f"{path.name} line {number} is not JSON ({reason})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path.name} line {number} is not an object")
            continue
        rows.append(row)
    del torn  # a torn last line is the trace of a kill mid-append: skipped by policy
    return rows, problems


def append_jsonl(path: str | os.PathLike, record: Mapping[str, object]) -> None:
    """Append one JSON line and fsync, so a kill leaves at most one torn last line; a full disk
    is one ReproError, with the file cut back to the records it held before."""
    data = memoryview((json.dumps(record, allow_nan=True) + "\n").encode("utf-8"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no torn line left for the next append
                os.ftruncate(fd, start)
            raise ReproError(
                f"cannot append to {path} ({exc.strerror or exc}); it holds the records before "
                "this one: free disk space, then resume the run (same command, or --resume)"
            ) from None
    finally:
        os.close(fd)


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, object]]) -> None:
    """Replace ``path`` with ``records``, one JSON line each, atomically."""
    text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


NUMBER = "number"  # int or float, not bool
INTEGER = "integer"  # int, not bool


def _is(value: Any, kind: Any) -> bool:
    if kind is None:
        return value is None
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _name(kind: Any) -> str:
    return "null" if kind is None else kind if isinstance(kind, str) else kind.__name__


def wrong_types(
    obj: Mapping[str, object], spec: Mapping[str, tuple[Any, ...]], where: str
) -> list[str]:
    """``where: 'key' is a <type>, expected <types>`` for every key of ``spec`` that ``obj`` holds
    with a value of another type (a missing key is not this function's business)."""
    return [
        f"{where}: {key!r} is {type(obj[key]).__name__}, expected "
        + " or ".join(_name(k) for k in kinds)
        for key, kinds in spec.items()
        if key in obj and not any(_is(obj[key], k) for k in kinds)
    ]
