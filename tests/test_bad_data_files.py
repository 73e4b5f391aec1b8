"""Tiny data files that would exhaust memory, and the pinned lists of globals the restricted
unpicklers allow (issue 21, items 4 and 5)."""

from __future__ import annotations

import pickle
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_batch, write_synthetic

from repro.data import cifar10
from repro.data.cifar10 import ALLOWED_GLOBALS, read_batch, read_classes
from repro.errors import ReproError
from repro.train import checkpoint


def _peak_of(call) -> int:
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_tiny_batches_meta_of_shared_lists_is_refused_without_rendering_it(tmp_path: Path):
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    shared: list = ["airplane"]
    for _ in range(40):  # 2**40 leaves once rendered as text; a few hundred bytes as a pickle
        shared = [shared, shared]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [shared] * 10}))
    assert (folder / "batches.meta").stat().st_size < 1000

    def read() -> None:
        with pytest.raises(
            ReproError, match=r"batches\.meta: a class name is list, expected a str"
        ):
            read_classes(folder)

    assert _peak_of(read) < 10 * 2**20


def test_labels_that_share_one_long_list_are_refused_before_numpy_expands_them(tmp_path: Path):
    n = 1000
    row = [0] * 3072  # one shared list: 1000 references cost nothing in the pickle
    path = tmp_path / "data_batch_1"
    write_batch(path, np.zeros((n, 3072), np.uint8), [row] * n)
    assert path.stat().st_size < 4 * 2**20

    def read() -> None:
        with pytest.raises(ReproError, match=r"'labels' must be a flat list .* holds a list"):
            read_batch(path)

    assert _peak_of(read) < 3 * n * 3072 + 2**20  # the file and its images; 24 MB as an array


def test_class_names_of_the_official_form_still_load(tmp_path: Path):
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    assert read_classes(tmp_path / "cifar-10-batches-py") == cifar10.CLASSES


# --- the allowed globals are pinned: one more is a failing test ---------------------------------


def test_the_batch_unpickler_allows_exactly_the_globals_numpy_arrays_need():
    assert set(ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
    # each maps to this module's checking stand-in, never to numpy's (or anyone's) callable
    assert all(
        getattr(value, "__module__", type(value).__module__) == cifar10.__name__
        for value in ALLOWED_GLOBALS.values()
    )


def test_a_batch_naming_popen_is_refused_even_in_a_doctored_allow_list(tmp_path, monkeypatch):
    """The pin above is what catches an allowed Popen: the unpickler itself would run it."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x04csubprocess\nPopen\n.")
    with pytest.raises(ReproError, match="refused to load subprocess.Popen"):
        read_batch(path)
    monkeypatch.setitem(ALLOWED_GLOBALS, ("subprocess", "Popen"), subprocess.Popen)
    with pytest.raises(AssertionError):
        test_the_batch_unpickler_allows_exactly_the_globals_numpy_arrays_need()


def test_the_checkpoint_safe_globals_are_pinned():
    names = {
        item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"
        for item in checkpoint.SAFE_GLOBALS
    }
    assert names == {
        "torch.torch_version.TorchVersion",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray._reconstruct",
        f"{np.ndarray.__module__}.ndarray",
        f"{np.dtype.__module__}.dtype",
        f"{type(np.dtype(np.uint32)).__module__}.{type(np.dtype(np.uint32)).__qualname__}",
    }
    assert len(checkpoint.SAFE_GLOBALS) == 6
