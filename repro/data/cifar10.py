"""Read CIFAR-10 from the official ``cifar-10-batches-py`` pickle layout and check it is complete.

The official files (from the tarball or torchvision's download) are verified against their MD5
sums; a smaller copy (such as the shared mini set) is accepted and reported as a subset.
Anything malformed raises :class:`repro.errors.ReproError` naming the file and the problem.

The batch files are pickles, and a pickle can call any function it names. They are read with a
restricted unpickler (:class:`BatchUnpickler`) that builds only what the format holds: dicts, lists,
strings, numbers and plain numeric numpy arrays. Any other global is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

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


# --- the restricted unpickler ----------------------------------------------------------------
# The official files (Python 2's cPickle, numpy 1.x) and copies re-saved with numpy >= 2 (the
# mini set) name three globals: numpy's array reconstructor, ``numpy.ndarray`` and ``numpy.dtype``.
# Each maps to a stand-in that checks its arguments are what numpy writes for a plain numeric array
# and only then lets numpy build it; any other global is refused before anything is called.

PLAIN_DTYPES = frozenset(f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)) | {
    "b1",
    "f2",
    "f4",
    "f8",
}
_PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)  # no subarray, names, fields; default sizes
REFUSED_HINT = (
    "a CIFAR-10 batch holds only arrays, lists, strings and numbers; "
    "this file is not a CIFAR-10 batch (re-download it)"
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global (a function or class) that a CIFAR-10 batch never holds."""


class MalformedBatch(ValueError):
    """The pickle builds something in a form numpy or the batch format never writes."""


def _brief(value: object, limit: int = 60) -> str:
    """``value`` for a one-line message: printable, on one line, at most ``limit`` characters."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _NdarrayMarker:
    """``numpy.ndarray`` in a batch pickle: only an argument of the reconstructor, never called."""

    __slots__ = ()


_NDARRAY = _NdarrayMarker()


class _DtypeSpec:
    """``numpy.dtype(typestr, align, copy)`` plus its BUILD state, for plain numeric types only."""

    __slots__ = ("dtype",)

    def __init__(self, typestr: object, align: object = False, copy: object = True) -> None:
        if type(typestr) is not str or typestr not in PLAIN_DTYPES:
            raise MalformedBatch(f"a dtype {_brief(repr(typestr))}, not a plain numeric type")
        self.dtype = np.dtype(typestr)

    def __setstate__(self, state: object) -> None:
        if (
            type(state) is not tuple
            or len(state) != 8
            or state[0] != 3
            or state[1] not in ("<", ">", "|", "=")
            or state[2:] != _PLAIN_DTYPE_STATE
        ):
            raise MalformedBatch("a dtype state that is not a plain numeric type's")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArraySpec:
    """What the reconstructor returns; its BUILD checks the state, then numpy fills ``array``."""

    __slots__ = ("array",)

    def __setstate__(self, state: object) -> None:
        self.array = _array_from_state(state)


def _reconstruct(cls: object, shape: object, typecode: object) -> _ArraySpec:
    """``numpy.core.multiarray._reconstruct`` as numpy calls it: ``(ndarray, (0,), b'b')``."""
    if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise MalformedBatch("an array reconstructor call that numpy never writes")
    return _ArraySpec()


def _array_from_state(state: object) -> np.ndarray:
    """``(1, shape, dtype, fortran, data)`` checked field by field; only then numpy's setstate."""
    if type(state) is not tuple or len(state) != 5 or state[0] != 1:
        raise MalformedBatch("an array state that is not (1, shape, dtype, order, data)")
    _, shape, spec, fortran, raw = state
    if type(shape) is not tuple or len(shape) > 32 or any(type(d) is not int for d in shape):
        raise MalformedBatch(f"an array shape {_brief(shape)} that is not a tuple of sizes")
    if any(d < 0 for d in shape):
        raise MalformedBatch(f"an array shape {_brief(shape)} with a negative size")
    if not isinstance(spec, _DtypeSpec) or not hasattr(spec, "dtype"):
        raise MalformedBatch(f"an array whose dtype is a {type(spec).__name__}")
    if type(fortran) not in (bool, int) or type(raw) not in (bytes, str):
        raise MalformedBatch("an array whose order flag or data has the wrong type")
    needed = math.prod(shape) * spec.dtype.itemsize
    if len(raw) != needed:
        raise MalformedBatch(f"an array of shape {shape} holding {len(raw)} bytes, not {needed}")
    array = np.ndarray((0,), dtype="b")  # what numpy's _reconstruct makes
    array.__setstate__((1, shape, spec.dtype, bool(fortran), raw))
    return array


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # the official files (numpy 1.x)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # copies saved with numpy >= 2
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeSpec,
}


def _check_keys(keys: list[Any]) -> None:
    """Dict keys are strings or integers (hashing a forged deep tuple would crash the process)."""
    for key in keys:
        if type(key) not in (str, bytes, int):
            raise MalformedBatch(f"a dict key of type {type(key).__name__}")


_PY_DISPATCH = cast("dict[int, Callable[[Any], None]]", pickle._Unpickler.dispatch)


class _Dispatch(dict[int, Callable[[Any], None]]):
    """The opcode table; a byte that is no opcode is an UnpicklingError (not a bare KeyError)."""

    def __missing__(self, opcode: int) -> Callable[[Any], None]:
        raise pickle.UnpicklingError(f"invalid load key, {bytes([opcode])!r}")


class BatchUnpickler(pickle._Unpickler):
    """Python's pure-Python unpickler, restricted to what a CIFAR-10 batch holds.

    Globals come only from :data:`ALLOWED_GLOBALS`; BUILD applies only to those stand-ins; dict keys
    must be strings or integers; sets and bytearrays are refused. The pure-Python unpickler, not the
    C one: its memo is a dict, so a forged memo index cannot make it allocate (and zero) gigabytes,
    as a 10-byte LONG_BINPUT does to the C unpickler. (BYTEARRAY8 would, in both: it allocates the
    length it reads before reading the bytes.)
    """

    stack: list[Any]  # the pure-Python unpickler's own attribute (typeshed leaves it out)
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = _Dispatch(_PY_DISPATCH)

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name)) if type(module) is type(name) is str else None
        if found is None:
            raise RefusedGlobal(f"{_brief(module)}.{_brief(name)}")
        return found

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, (_ArraySpec, _DtypeSpec)):
            raise MalformedBatch(f"a BUILD of a {type(target).__name__}, not of an array")
        target.__setstate__(state)

    def load_setitem(self) -> None:
        _check_keys(self.stack[-2:-1])
        _PY_DISPATCH[pickle.SETITEM[0]](self)

    def load_setitems(self) -> None:
        _check_keys(self.stack[0::2])
        _PY_DISPATCH[pickle.SETITEMS[0]](self)

    def load_dict(self) -> None:
        _check_keys(self.stack[0::2])
        _PY_DISPATCH[pickle.DICT[0]](self)

    def refuse_set(self) -> None:
        raise MalformedBatch("a set")

    def refuse_bytearray(self) -> None:
        raise MalformedBatch("a bytearray")

    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.ADDITEMS[0]] = refuse_set
    dispatch[pickle.FROZENSET[0]] = refuse_set
    dispatch[pickle.BYTEARRAY8[0]] = refuse_bytearray


def _resolve(value: object) -> object:
    """An array stand-in -> the array it built."""
    if isinstance(value, _ArraySpec):
        if not hasattr(value, "array"):
            raise MalformedBatch("an array without its data")
        return value.array
    return value


def unpickle_batch(path: Path, raw: bytes) -> object:
    """The pickle in ``raw`` (the file ``path``) through :class:`BatchUnpickler`; any failure is
    one :class:`ReproError` naming the file. Python 2 strings are read as latin-1, as before."""
    try:
        obj = BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if type(obj) is dict:
            return {key: _resolve(value) for key, value in obj.items()}
        return _resolve(obj)
    except RefusedGlobal as exc:
        raise ReproError(f"{path}: refused to load {exc} from the pickle: {REFUSED_HINT}") from exc
    except MalformedBatch as exc:
        raise ReproError(
            f"{path}: not a CIFAR-10 batch (its pickle holds {exc}); download it again"
        ) from exc
    except Exception as exc:  # garbage or truncated input: the unpickler raises many types
        detail = _brief(" ".join(str(exc).split()), 120)
        raise ReproError(
            f"{path}: cannot read batch file (truncated or not a pickle: "
            f"{type(exc).__name__}{': ' + detail if detail else ''}); download it again"
        ) from exc


# --- reading and checking the files ----------------------------------------------------------


def read_file(path: Path) -> bytes:
    """The bytes of one data file; a folder, an unreadable or an empty file is one clear error."""
    if path.is_dir():
        raise ReproError(
            f"{path}: is a folder, not a batch file; remove it and put the file from the official "
            "archive there (or download the data again)"
        )
    if path.exists() and not path.is_file():
        raise ReproError(
            f"{path}: not a regular file (a pipe, socket or device); put the batch file from the "
            "official archive there (or download the data again)"
        )
    if not path.is_file():
        raise ReproError(
            f"{path}: missing batch file (a CIFAR-10 copy needs data_batch_1..5 and test_batch)"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReproError(
            f"{path}: cannot read the file ({exc.strerror or exc}); check its permissions, "
            "or download the data again"
        ) from exc
    if not raw:
        raise ReproError(
            f"{path}: cannot read batch file (empty: 0 bytes); the copy is incomplete, "
            "download it again"
        )
    return raw


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """One batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N], md5 of the file)."""
    raw = read_file(path)
    md5 = hashlib.md5(raw).hexdigest()
    obj = unpickle_batch(path, raw)
    if not isinstance(obj, dict) or "data" not in obj or "labels" not in obj:
        got = _brief(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
        raise ReproError(
            f"{path}: not a CIFAR-10 batch (expected a dict with 'data' and 'labels', got {got})"
        )
    images = _check_images(path, obj["data"])
    labels = _check_labels(path, obj["labels"], len(images))
    return images, labels, md5


def _check_images(path: Path, data: object) -> np.ndarray:
    """``data``: a uint8 array [N, 3072] -> the images [N, 3, 32, 32]."""
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray):
        raise ReproError(f"{path}: 'data' is a {type(data).__name__}, expected a uint8 numpy array")
    if data.dtype != np.uint8:
        raise ReproError(f"{path}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise ReproError(f"{path}: 'data' has shape {tuple(data.shape)}, expected (N, {n_pixels})")
    return data.reshape(-1, *IMAGE_SHAPE)


def _check_labels(path: Path, labels: object, count: int) -> np.ndarray:
    """``labels``: ``count`` integers in 0..9 -> int64 array. Each element's type is checked
    before numpy sees the list: a list of ``count`` references to one shared 3,072-long list
    (a 3 MB pickle) would otherwise become a 1.3 GB array before its shape is refused."""
    if type(labels) is list:
        wrong = next((v for v in labels if type(v) is not int), None)
        if wrong is not None:
            raise ReproError(
                f"{path}: 'labels' must be a flat list of integers in 0..{NUM_CLASSES - 1}, "
                f"but it holds a {type(wrong).__name__}; download the data again"
            )
    elif not isinstance(labels, np.ndarray):
        raise ReproError(f"{path}: 'labels' must be a list, not a {type(labels).__name__}")
    try:
        labels_arr = np.asarray(labels)
    except Exception as exc:
        raise ReproError(
            f"{path}: 'labels' is not a list of integers ({_brief(str(exc), 120)})"
        ) from exc
    if labels_arr.ndim != 1 or (
        labels_arr.size and not np.issubdtype(labels_arr.dtype, np.integer)
    ):
        raise ReproError(
            f"{path}: 'labels' must be a flat list of integers, got dtype {labels_arr.dtype} "
            f"and shape {_brief(tuple(labels_arr.shape))}"
        )
    if labels_arr.shape[0] != count:
        raise ReproError(f"{path}: count mismatch: {count} images but {labels_arr.shape[0]} labels")
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= NUM_CLASSES):
        bad = labels_arr[(labels_arr < 0) | (labels_arr >= NUM_CLASSES)]
        raise ReproError(
            f"{path}: labels out of range 0..{NUM_CLASSES - 1} ({bad.size} bad, e.g. {int(bad[0])})"
        )
    return labels_arr.astype(np.int64)


def read_classes(folder: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta``; the standard names when the file is absent."""
    path = folder / META_FILE
    if not path.exists() and not path.is_symlink():
        return CLASSES
    meta = unpickle_batch(path, read_file(path))
    if not isinstance(meta, dict) or "label_names" not in meta:
        got = _brief(sorted(map(str, meta))) if isinstance(meta, dict) else type(meta).__name__
        raise ReproError(
            f"{path}: not a CIFAR-10 batches.meta (expected a dict with 'label_names', got {got}); "
            "download the data again"
        )
    raw_names = meta["label_names"]
    # each name's type and length is checked before str() sees it: a 233-byte pickle of lists
    # that share one another renders as gigabytes of "class names" (found by a probe)
    if type(raw_names) not in (list, tuple):
        raise ReproError(f"{path}: 'label_names' is a {type(raw_names).__name__}, expected a list")
    if len(raw_names) != NUM_CLASSES:
        raise ReproError(f"{path}: {len(raw_names)} class names, expected {NUM_CLASSES}")
    bad = next((n for n in raw_names if type(n) not in (str, bytes) or len(n) > 100), None)
    if bad is not None:
        what = type(bad).__name__ if type(bad) not in (str, bytes) else f"{len(bad)} characters"
        raise ReproError(
            f"{path}: a class name is {what}, expected a string of at most 100 characters; "
            "download the data again"
        )
    return tuple(n.decode("latin1") if type(n) is bytes else n for n in raw_names)


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
    for split, count, files in (
        ("training", n_train, "data_batch_1..5 hold"),
        ("test", n_test, f"{TEST_FILE} holds"),
    ):
        if count == 0:
            raise ReproError(
                f"{folder}: the {split} split has 0 images ({files} none); a usable copy "
                "needs images in both splits, download the data again"
            )
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
