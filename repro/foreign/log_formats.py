"""The log formats `repro import-run` reads, one reader per format, registered in one table.

A format is one :class:`LogFormat` entry in :data:`LOG_FORMATS` (through :func:`register_format`):
its name (``--format NAME``), the reader that turns a file into raw rows (one dict per evaluation,
values as written), how it is recognised (file suffixes, a folder glob, optionally a sniff of the
file's start), and what ``--scale auto`` means for it when the format fixes the scale. The
importer (:mod:`repro.foreign.importer`) only looks formats up here: a new log format is one entry.

A folder is searched, and a file's name matched, in registration order, formats that read a
whole folder (TensorBoard's event files) first.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.foreign.caffe_log import caffe_rows, looks_like_caffe

TB_INSTALL = "pip install 'resnet-repro[tensorboard]'"
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class LogFormat:
    """One log format: its reader and how a file (or folder) of it is recognised."""

    name: str
    read: Callable[[Path], Rows]  # the raw rows of a file (or of a folder, with reads_folder)
    suffixes: tuple[str, ...] = ()  # file suffixes (no dot, lower case) that say this format
    glob: str | None = None  # the files of this format in a folder, when a folder is given
    described: str = ""  # how the folder error names it, e.g. "one .csv"
    reads_folder: bool = False  # the reader takes the folder that holds the glob's files
    name_has: str | None = None  # a part of a file's name that says this format
    sniff: Callable[[Path], bool] | None = None  # a file of no known suffix, by its content
    auto_scale: str | None = None  # what --scale auto is for this format ("fraction", ...)
    scale_note: str = ""  # why, in the import's decided scale

    def names(self, path: Path) -> bool:
        """Whether ``path``'s name (or being a folder) says this format."""
        if (self.reads_folder and path.is_dir()) or (self.name_has and self.name_has in path.name):
            return True
        return path.suffix[1:].lower() in self.suffixes


LOG_FORMATS: dict[str, LogFormat] = {}


def register_format(fmt: LogFormat) -> LogFormat:
    """Add (or replace) a format in :data:`LOG_FORMATS`; returns it."""
    LOG_FORMATS[fmt.name] = fmt
    return fmt


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def read_text(path: Path) -> str:
    """A log file's text; ReproError for one that cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(f"{path} cannot be read ({exc})") from None


def json_rows(path: Path) -> Rows:
    """A per-epoch ``metrics.json``: a JSON list of objects."""
    text = read_text(path)
    try:
        rows = json.loads(text)
    except RecursionError:
        raise ReproError(f"{path} nests JSON too deeply to be a log; fix the log") from None
    except ValueError as exc:
        raise ReproError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ReproError(f"{path} must hold a JSON list of objects, one per epoch")
    return rows


def csv_rows(path: Path) -> Rows:
    """A CSV file with a header line."""
    return [dict(r) for r in csv.DictReader(read_text(path).splitlines())]


def caffe_log_rows(path: Path) -> Rows:
    """A Caffe training log (:mod:`repro.foreign.caffe_log`)."""
    return caffe_rows(read_text(path), path)


def tensorboard_rows(path: Path) -> Rows:
    """One row per step from the scalars of TensorBoard event files (tag -> column)."""
    if not tensorboard_available():
        raise ReproError(f"reading TensorBoard event files needs tensorboard: {TB_INSTALL}")
    module = importlib.import_module("tensorboard.backend.event_processing.event_accumulator")
    acc = module.EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    by_step: dict[int, dict[str, Any]] = {}
    for tag in acc.Tags().get("scalars", []):
        for event in acc.Scalars(tag):
            by_step.setdefault(event.step, {"step": event.step})[tag] = event.value
    return [by_step[s] for s in sorted(by_step)]


register_format(LogFormat("json", json_rows, ("json",), "*.json", "one metrics .json"))
register_format(LogFormat("csv", csv_rows, ("csv",), "*.csv", "one .csv"))
register_format(LogFormat("tensorboard", tensorboard_rows, glob="events.out.tfevents.*",
                          described="TensorBoard event files", reads_folder=True,
                          name_has=".tfevents."))  # fmt: skip
register_format(LogFormat("caffe", caffe_log_rows, ("log",), "*.log", "one Caffe .log",
                          sniff=looks_like_caffe, auto_scale="fraction",
                          scale_note="a Caffe log prints accuracies as 0-1"))  # fmt: skip


def search_order() -> list[LogFormat]:
    """The formats in the order a folder is searched: those that read a whole folder first."""
    return sorted(LOG_FORMATS.values(), key=lambda f: not f.reads_folder)


def _in_folder(src: Path) -> Path:
    """The one log in a folder: the first format (in search order) with files there."""
    found: list[Path] = []
    for fmt in search_order():
        hits = sorted(src.glob(fmt.glob)) if fmt.glob else []
        if hits:
            found = [src] if fmt.reads_folder else hits
            break
    if len(found) != 1:
        kinds = [f.described for f in LOG_FORMATS.values() if f.described]
        listed = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else "".join(kinds)
        raise ReproError(f"{src}: expected {listed}, found {len(found) or 'none'}; name the file")
    return found[0]


def find_log(src: Path, name: str | None) -> tuple[Path, LogFormat]:
    """The log file in ``src`` (a file or a folder) and its format (``name``, else recognised)."""
    choices = "|".join(LOG_FORMATS)
    if name is not None and name not in LOG_FORMATS:
        raise ReproError(f"unknown format {name!r}; choose one of {', '.join(LOG_FORMATS)}")
    if not src.exists():
        raise ReproError(f"{src} does not exist")
    if src.is_dir():
        src = _in_folder(src)
    if name is None:
        name = next((f.name for f in search_order() if f.names(src)), None)
    if name is None and src.is_file():
        name = next((f.name for f in search_order() if f.sniff and f.sniff(src)), None)
    if name is None:
        raise ReproError(f"{src}: unknown format {src.suffix!r}; pass --format {choices}")
    return src, LOG_FORMATS[name]
