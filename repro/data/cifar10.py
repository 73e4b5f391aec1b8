"""Read CIFAR-10 from the official ``cifar-10-batches-py`` pickle layout and check it is complete.

The official files (from the tarball or torchvision's download) are verified against their MD5
sums; a smaller copy (such as the shared mini set) is accepted and reported as a subset.
Anything malformed raises :class:`repro.errors.ReproError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from repro.errors import ReproError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
OFFICIAL_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
OFFICIAL_TRAIN_COUNT = 50_000
OFFICIAL_TEST_COUNT = 10_000
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASSES)
IMAGE_SHAPE = (3, 32, 32)
DEFAULT_DATA_ROOT = Path("data/cifar10")
DATA_ENV = "REPRO_DATA"

MANUAL_HINT = (
    "download cifar-10-python.tar.gz (Python version) from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it so that {root}/" + FOLDER + "/data_batch_1 .. data_batch_5 and test_batch exist"
)


@dataclass(frozen=True)
class FileCheck:
    """The MD5 of one batch file against the official sum."""

    name: str
    md5: str
    expected: str

    @property
    def ok(self) -> bool:
        return self.md5 == self.expected


@dataclass
class CIFAR10:
    """CIFAR-10 in memory: uint8 images [N, 3, 32, 32] and int64 labels for train and test."""

    root: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    official: bool
    classes: tuple[str, ...] = CLASSES
    checksums: dict[str, FileCheck] = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.train_labels.numel())

    @property
    def num_test(self) -> int:
        return int(self.test_labels.numel())

    def summary(self) -> str:
        """One line: where it is, how many images, official set or subset."""
        kind = (
            "official CIFAR-10 (MD5 verified)"
            if self.official
            else f"SUBSET of CIFAR-10 (official: {OFFICIAL_TRAIN_COUNT} / {OFFICIAL_TEST_COUNT})"
        )
        return f"{self.root}: {self.num_train} train / {self.num_test} test images, {kind}"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the explicit ``--data-root``, else ``$REPRO_DATA``, else ``data/cifar10``."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_ROOT


def find_batches_dir(root: str | os.PathLike[str]) -> Path:
    """The ``cifar-10-batches-py`` folder: ``root/cifar-10-batches-py`` or ``root`` itself."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ReproError(
            f"{root}: data folder does not exist; run `repro data download --root {root}` "
            f"or {MANUAL_HINT.format(root=root)}"
        )
    if not root.is_dir():
        raise ReproError(f"{root}: not a folder (expected a folder holding {FOLDER})")
    nested = root / FOLDER
    if nested.is_dir():
        return nested
    if any((root / name).exists() for name in (*TRAIN_FILES, TEST_FILE)):
        return root
    raise ReproError(
        f"{root}: no {FOLDER} folder and no CIFAR-10 batch files in it; "
        f"run `repro data download --root {root}` or {MANUAL_HINT.format(root=root)}"
    )


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N], md5 of the file)."""
    if not path.is_file():
        raise ReproError(
            f"{path}: missing batch file (a CIFAR-10 copy needs data_batch_1..5 and test_batch)"
        )
    raw = path.read_bytes()
    md5 = hashlib.md5(raw).hexdigest()
    try:
        obj = pickle.loads(raw, encoding="latin1")
    except Exception as exc:  # pickle raises many types on garbage or truncated input
        kind = "empty" if not raw else "truncated or not a pickle"
        raise ReproError(
            f"{path}: cannot read batch file ({kind}: {type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict) or "data" not in obj or "labels" not in obj:
        got = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise ReproError(
            f"{path}: not a CIFAR-10 batch (expected a dict with 'data' and 'labels', got {got})"
        )
    data, labels = obj["data"], obj["labels"]
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray):
        raise ReproError(f"{path}: 'data' is a {type(data).__name__}, expected a uint8 numpy array")
    if data.dtype != np.uint8:
        raise ReproError(f"{path}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise ReproError(f"{path}: 'data' has shape {tuple(data.shape)}, expected (N, {n_pixels})")
    try:
        labels_arr = np.asarray(labels)
    except Exception as exc:
        raise ReproError(f"{path}: 'labels' is not a list of integers ({exc})") from exc
    if labels_arr.ndim != 1 or (
        labels_arr.size and not np.issubdtype(labels_arr.dtype, np.integer)
    ):
        raise ReproError(
            f"{path}: 'labels' must be a flat list of integers, got dtype {labels_arr.dtype} "
            f"and shape {tuple(labels_arr.shape)}"
        )
    if labels_arr.shape[0] != data.shape[0]:
        raise ReproError(
            f"{path}: count mismatch: {data.shape[0]} images but {labels_arr.shape[0]} labels"
        )
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= NUM_CLASSES):
        bad = labels_arr[(labels_arr < 0) | (labels_arr >= NUM_CLASSES)]
        raise ReproError(
            f"{path}: labels out of range 0..{NUM_CLASSES - 1} ({bad.size} bad, e.g. {int(bad[0])})"
        )
    images = data.reshape(-1, *IMAGE_SHAPE)
    return images, labels_arr.astype(np.int64), md5


def read_classes(folder: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta``; the standard names when the file is absent."""
    path = folder / META_FILE
    if not path.is_file():
        return CLASSES
    try:
        with path.open("rb") as f:
            meta = pickle.load(f, encoding="latin1")
        names = tuple(str(n) for n in meta["label_names"])
    except Exception as exc:
        raise ReproError(f"{path}: cannot read class names ({type(exc).__name__}: {exc})") from exc
    if len(names) != NUM_CLASSES:
        raise ReproError(f"{path}: {len(names)} class names, expected {NUM_CLASSES}")
    return names


def load_cifar10(root: str | os.PathLike[str] | None = None) -> CIFAR10:
    """Load and validate CIFAR-10 from ``root`` (resolved with :func:`resolve_data_root`)."""
    folder = find_batches_dir(resolve_data_root(root))
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    checks: dict[str, FileCheck] = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        images, labels, md5 = read_batch(folder / name)
        parts[name] = (images, labels)
        checks[name] = FileCheck(name, md5, OFFICIAL_MD5[name])
    classes = read_classes(folder)

    train_x = np.concatenate([parts[n][0] for n in TRAIN_FILES])
    train_y = np.concatenate([parts[n][1] for n in TRAIN_FILES])
    test_x, test_y = parts[TEST_FILE]
    official = all(c.ok for c in checks.values())
    n_train, n_test = len(train_y), len(test_y)
    if not official and (n_train >= OFFICIAL_TRAIN_COUNT or n_test >= OFFICIAL_TEST_COUNT):
        bad = ", ".join(f"{c.name} (md5 {c.md5})" for c in checks.values() if not c.ok)
        raise ReproError(
            f"{folder}: full-size copy ({n_train} train / {n_test} test images) fails the official "
            f"MD5 check: {bad}; the files are corrupt or altered, download them again"
        )
    return CIFAR10(
        root=folder,
        train_images=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(np.ascontiguousarray(test_x)),
        test_labels=torch.from_numpy(np.ascontiguousarray(test_y)),
        official=official,
        classes=classes,
        checksums=checks,
    )
