"""Helpers for the data tests: writers for synthetic copies in the official
``cifar-10-batches-py`` pickle layout that also return the arrays written (for round trips)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = [
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
]


def write_batch(path: Path, data: object, labels: object) -> None:
    """One batch file as the official pickles hold it (plus protocol 4, like the mini set)."""
    with path.open("wb") as f:
        pickle.dump({"batch_label": path.name, "data": data, "labels": labels}, f, protocol=4)


def write_synthetic(
    root: Path, per_batch: int = 12, n_test: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a random copy under ``root/cifar-10-batches-py``; return its arrays ([N,3,32,32])."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in TRAIN_FILES:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        write_batch(folder / name, x, y)
        xs.append(x)
        ys.append(y)
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = rng.integers(0, 10, n_test).tolist()
    write_batch(folder / "test_batch", tx, ty)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(
            {"label_names": CLASS_NAMES, "num_vis": 3072, "num_cases_per_batch": per_batch}, f
        )
    return {
        "train_images": np.concatenate(xs).reshape(-1, 3, 32, 32),
        "train_labels": np.concatenate(ys).astype(np.int64),
        "test_images": tx.reshape(-1, 3, 32, 32),
        "test_labels": np.asarray(ty, dtype=np.int64),
    }


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """A random CIFAR-10 look-alike in the official layout under ``root``; returns ``root``."""
    write_synthetic(root, per_batch, test, seed)
    return root


def _py2_int(value: int) -> bytes:
    """An int as cPickle's protocol 2 writes it (BININT1, BININT2 or BININT)."""
    if 0 <= value < 256:
        return b"K" + struct.pack("<B", value)
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_str(text: str) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING or BINSTRING): bytes the reader decodes as latin-1."""
    raw = text.encode("latin1")
    if len(raw) < 256:
        return b"U" + struct.pack("<B", len(raw)) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def python2_batch(data: np.ndarray, labels: list[int], filenames: list[str] | None = None) -> bytes:
    """A batch pickle in the layout of the official files: Python 2's cPickle, protocol 2, numpy
    1.x (GLOBAL ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``; the
    pixels as one BINSTRING; BINPUT/LONG_BINPUT memo entries, numbered in file order)."""
    out = bytearray(b"\x80\x02}")
    memo = iter(range(1 << 30))

    def put(*chunks: bytes) -> None:
        out.extend(b"".join(chunks))
        index = next(memo)
        out.extend(
            b"q" + struct.pack("<B", index) if index < 256 else b"r" + struct.pack("<I", index)
        )

    put()
    out.extend(b"(")
    put(_py2_str("data"))
    put(b"cnumpy.core.multiarray\n_reconstruct\n")
    put(b"cnumpy\nndarray\n")
    put(b"K\x00\x85U\x01b\x87R")  # _reconstruct(ndarray, (0,), 'b')
    tuple_n = {1: b"\x85", 2: b"\x86"}[data.ndim]  # TUPLE1 / TUPLE2
    out.extend(b"(K\x01" + b"".join(_py2_int(d) for d in data.shape) + tuple_n)  # (1, shape,
    put(b"cnumpy\ndtype\n")
    put(_py2_str(data.dtype.str[1:]), b"K\x00K\x01\x87R")  # dtype('u1', 0, 1),
    out.extend(
        b"(K\x03" + _py2_str(data.dtype.str[0]) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )  # its state (3, '|', None, None, None, -1, -1, 0), BUILD,
    out.extend(
        b"\x89T" + struct.pack("<i", data.nbytes) + data.tobytes() + b"tb"
    )  # C order, pixels)
    put(_py2_str("labels"))
    put(b"]")
    out.extend(b"(" + b"".join(_py2_int(v) for v in labels) + b"e")
    put(_py2_str("batch_label"))
    put(_py2_str("training batch 1 of 5"))
    if filenames is not None:
        put(_py2_str("filenames"))
        put(b"]")
        out.extend(b"(")
        for name in filenames:
            put(_py2_str(name))
        out.extend(b"e")
    return bytes(out + b"u.")
