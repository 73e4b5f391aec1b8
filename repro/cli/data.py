"""Download and verify CIFAR-10 (`repro data download`, `repro data verify`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

import torch

from repro.cli.options import add_data_root, add_json
from repro.data.cifar10 import (
    CIFAR10,
    FOLDER,
    MANUAL_HINT,
    OFFICIAL_TEST_COUNT,
    OFFICIAL_TRAIN_COUNT,
    load_cifar10,
    resolve_data_root,
)
from repro.errors import ReproError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dl = sub.add_parser("download", help="download CIFAR-10 with torchvision (MD5-checked)")
    add_data_root(dl, "", "--root")
    ver = sub.add_parser("verify", help="counts per split and class, official or subset, MD5s")
    add_data_root(ver, "", "--root")
    add_json(ver, "print the report as JSON")
    ver.add_argument(
        "--require-official",
        action="store_true",
        help="exit 1 unless the copy is the complete official set",
    )


def run(args: argparse.Namespace) -> int:
    root = resolve_data_root(args.data_root)
    if args.data_command == "download":
        return download(root)
    return verify(root, as_json=args.json, require_official=args.require_official)


def _torchvision_download(dest: Path) -> None:
    """Fetch and extract the official archive into ``dest`` (torchvision checks its MD5)."""
    from torchvision.datasets import CIFAR10 as TVCIFAR10

    TVCIFAR10(root=str(dest), train=True, download=True)


def download(root: Path) -> int:
    """Download into a temp folder beside ``root``; move into place only once verified."""
    target = root / FOLDER
    if target.exists():
        try:
            data = load_cifar10(root)
        except ReproError as exc:
            raise ReproError(
                f"{target} exists but is not a readable CIFAR-10 copy ({exc}); remove it and retry"
            ) from exc
        if data.official:
            print(f"already present: {data.summary()}")
            return 0
        raise ReproError(
            f"{target} exists but is a subset ({data.num_train} train / {data.num_test} test "
            "images); remove it or pick another --root to download the full set"
        )
    created = _missing_folders(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        _download_into(root, target)
    except BaseException as exc:
        for folder in created:  # deepest first; only the empty folders this call made
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):  # a read-only or full disk, a path through a file
            raise ReproError(
                f"cannot write to --root {root} ({exc.strerror or exc}); choose a writable folder"
            ) from None
        raise
    print(f"downloaded: {load_cifar10(root).summary()}")
    return 0


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (root, *root.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _download_into(root: Path, target: Path) -> None:
    """Fetch into a temp folder beside ``root``, verify, then move the batches to ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-download-", dir=root.parent))
    try:
        try:
            _torchvision_download(tmp)
        except Exception as exc:  # network, disk, bad archive: one clear message either way
            raise ReproError(
                f"could not download CIFAR-10 from {CIFAR10_URL} ({type(exc).__name__}: {exc}); "
                f"to place the files by hand, {MANUAL_HINT.format(root=root)}, then run "
                f"`repro data verify --root {root}`"
            ) from exc
        data = load_cifar10(tmp)
        if not data.official:
            raise ReproError(f"downloaded copy failed verification: {data.summary()}")
        root.mkdir(exist_ok=True)
        (tmp / FOLDER).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class SplitCounts(TypedDict):
    count: int
    per_class: dict[str, int]  # class name -> images


class FileCheck(TypedDict):
    md5: str
    expected: str  # the official file's
    ok: bool


class DataReport(TypedDict):
    """`repro data verify`'s report (``--json`` prints it as is)."""

    root: str
    official: bool
    subset: bool
    classes: list[str]
    train: SplitCounts
    test: SplitCounts
    official_counts: dict[str, int]
    checksums: dict[str, FileCheck]


def report(data: CIFAR10) -> DataReport:
    """The verify report as plain data (the JSON form)."""

    def split(labels: torch.Tensor) -> SplitCounts:
        counts = torch.bincount(labels, minlength=len(data.classes)).tolist()
        return {"count": int(labels.numel()), "per_class": dict(zip(data.classes, counts))}

    return {
        "root": str(data.root),
        "official": data.official,
        "subset": not data.official,
        "classes": list(data.classes),
        "train": split(data.train_labels),
        "test": split(data.test_labels),
        "official_counts": {"train": OFFICIAL_TRAIN_COUNT, "test": OFFICIAL_TEST_COUNT},
        "checksums": {
            name: {"md5": c.md5, "expected": c.expected, "ok": c.ok}
            for name, c in data.checksums.items()
        },
    }


def verify(root: Path, as_json: bool = False, require_official: bool = False) -> int:
    """Print counts per split and class, whether the copy is official, and each file's MD5."""
    data = load_cifar10(root)
    rep = report(data)
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        print(data.summary())
        width = max(len(c) for c in data.classes)
        print(f"{'class':<{width}}  {'train':>6}  {'test':>6}")
        for name in data.classes:
            tr, te = rep["train"]["per_class"][name], rep["test"]["per_class"][name]
            print(f"{name:<{width}}  {tr:>6}  {te:>6}")
        print(f"{'total':<{width}}  {data.num_train:>6}  {data.num_test:>6}")
        for name, c in rep["checksums"].items():
            print(f"{name:<13} md5 {c['md5']}  {'OK' if c['ok'] else 'differs from official'}")
    if require_official and not data.official:
        print(
            f"repro data: {data.root} is a subset ({data.num_train} train / {data.num_test} "
            "test images), not the complete official set that --require-official asks for; "
            f"download the full set with `repro data download --root {root}`",
            file=sys.stderr,
        )
        return 1
    return 0
