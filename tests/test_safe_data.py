"""No CIFAR-10 file can run code: batch files and batches.meta are read with a restricted
unpickler. Payloads that would run code are refused before they run (through the loader, the CLI
in-process and `python -m repro`); forms numpy never writes are refused; the official layout and
the mini set read exactly as plain pickle reads them; damaged files (fuzzed) either load as a
valid batch or end in exactly one ReproError line."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import CLASS_NAMES, python2_batch, write_batch, write_synthetic
from fuzz_helpers import damaged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro.cli import main
from repro.data import cifar10 as cifar10_mod
from repro.data import load_cifar10
from repro.data.cifar10 import read_batch, read_classes, unpickle_batch
from repro.errors import ReproError

ROOT = Path(__file__).resolve().parents[1]
FILES = ("data_batch_1", "test_batch", "batches.meta")


# --- payloads: what a tampered file could hold ------------------------------------------------


class ShellTouch:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch '{self.marker}'",))


class PathTouch:
    """Unpickling this runs ``pathlib.Path.touch(MARKER)`` (no shell involved)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (pathlib.Path.touch, (pathlib.PurePosixPath(self.marker),))


def _payload(kind: str, marker: Path) -> object:
    return ShellTouch(marker) if kind == "os.system" else PathTouch(marker)


def _tamper(root: Path, name: str, payload: object, protocol: int = 4) -> Path:
    """A good synthetic copy whose file ``name`` carries ``payload`` where the data should be."""
    write_synthetic(root, per_batch=2, n_test=2)
    path = root / "cifar-10-batches-py" / name
    if name == "batches.meta":
        content = {"label_names": [payload, *CLASS_NAMES[1:]], "num_vis": 3072}
    else:
        content = {"batch_label": name, "data": payload, "labels": [0, 1]}
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


def _refusal(path: Path, global_name: str) -> str:
    return (
        f"{path}: refused to load {global_name} from the pickle: a CIFAR-10 batch holds only "
        "arrays, lists, strings and numbers; this file is not a CIFAR-10 batch (re-download it)"
    )


def test_the_payloads_do_run_under_plain_pickle(tmp_path: Path) -> None:
    """The control: without the restricted unpickler these files would run code."""
    for kind in ("os.system", "Path.touch"):
        marker = tmp_path / f"marker-{kind}"
        pickle.loads(pickle.dumps(_payload(kind, marker)))
        assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["os.system", "Path.touch"])
@pytest.mark.parametrize("name", FILES)
def test_a_batch_with_a_code_payload_is_refused_before_it_runs(
    tmp_path: Path, name: str, kind: str, protocol: int
) -> None:
    marker = tmp_path / "marker"
    path = _tamper(tmp_path / "d", name, _payload(kind, marker), protocol)
    with pytest.raises(ReproError) as err:
        load_cifar10(tmp_path / "d")
    # the first global the pickle names; protocols 0-2 spell builtins as Python 2 did
    refused = {"os.system": "posix.system", "Path.touch": "pathlib.Path.touch"}[kind]
    if kind == "Path.touch" and protocol < 4:
        refused = "__builtin__.getattr" if protocol < 3 else "builtins.getattr"
    assert str(err.value) == _refusal(path, refused)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["data_batch_1", "batches.meta"])
def test_the_cli_refuses_a_code_payload_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    marker = tmp_path / "marker"
    path = _tamper(tmp_path / "d", name, ShellTouch(marker))
    assert main(["data", "verify", "--data-root", str(tmp_path / "d")]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"repro data: error: {_refusal(path, 'posix.system')}"]
    assert out == "" and not marker.exists()


def test_python_m_repro_refuses_a_code_payload(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _tamper(tmp_path / "d", "test_batch", ShellTouch(marker))
    proc = subprocess.run(
        [sys.executable, "-m", "repro", "data", "verify", "--data-root", str(tmp_path / "d")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"repro data: error: {_refusal(path, 'posix.system')}"]
    assert proc.stdout == "" and not marker.exists()


# --- hand-written pickles: every way a pickle names a global or mutates an object -------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        # GLOBAL + REDUCE, INST, OBJ, STACK_GLOBAL + NEWOBJ: each names its global first
        (b"cos\nsystem\n(S'touch x'\ntR.", "refused to load os.system from the pickle"),
        (b"(S'touch x'\nios\nsystem\n.", "refused to load os.system from the pickle"),
        (b"\x80\x02(cbuiltins\nexec\nS'1'\no.", "refused to load builtins.exec from the pickle"),
        (
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93)\x81.",
            "refused to load builtins.eval from the pickle",
        ),
        # a global name with a newline in it still gives one line
        (b"\x80\x04\x8c\x04os\nx\x8c\x01y\x93.", "refused to load 'os\\nx'.y from the pickle"),
        # numpy globals outside the three the format uses
        (b"cnumpy\nload\n.", "refused to load numpy.load from the pickle"),
        (
            b"cnumpy._core.numeric\n_frombuffer\n.",
            "refused to load numpy._core.numeric._frombuffer from the pickle",
        ),
        # BUILD may only fill an array or a dtype; sets and tuple keys are never in a batch
        (b"\x80\x04]}b.", "not a CIFAR-10 batch (its pickle holds a BUILD of a list"),
        (b"\x80\x04\x8f(K\x01\x90.", "not a CIFAR-10 batch (its pickle holds a set)"),
        (b"\x80\x04(K\x01\x91.", "not a CIFAR-10 batch (its pickle holds a set)"),
        (b"\x80\x04}N\x85K\x01s.", "its pickle holds a dict key of type tuple"),
        (b"\x80\x04(N\x85K\x01d.", "its pickle holds a dict key of type tuple"),
        # BYTEARRAY8 allocates the length it claims (here 8 GiB) before reading: refused first
        (b"\x80\x05\x96\x00\x00\x00\x00\x02\x00\x00\x00.", "its pickle holds a bytearray"),
        # garbage: a byte that is no opcode, a persistent id, a stream that stops
        (b"\xff", "(truncated or not a pickle: UnpicklingError: invalid load key, b'\\xff')"),
        (b"\x80\x04K\x01Q.", "UnpicklingError: unsupported persistent id encountered"),
        (b"\x80\x04", "(truncated or not a pickle: EOFError); download it again"),
    ],
)
def test_a_hand_written_pickle_is_refused_with_one_line(
    tmp_path: Path, raw: bytes, fragment: str
) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    with pytest.raises(ReproError) as err:
        read_batch(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (np.array([1, "x"], dtype=object), "a dtype 'O8', not a plain numeric type"),
        (np.zeros(2, dtype=[("a", "u1")]), "a dtype 'V1', not a plain numeric type"),
        (np.zeros(2, dtype="U3"), "a dtype 'U3', not a plain numeric type"),
        (np.zeros(2, dtype="M8[s]"), "a dtype 'M8', not a plain numeric type"),
    ],
)
def test_an_array_numpy_would_build_with_objects_or_fields_is_refused(
    tmp_path: Path, data: np.ndarray, fragment: str
) -> None:
    path = tmp_path / "data_batch_1"
    write_batch(path, data, [0, 1])
    with pytest.raises(ReproError) as err:
        read_batch(path)
    assert (
        str(err.value)
        == f"{path}: not a CIFAR-10 batch (its pickle holds {fragment}); download it again"
    )


def _array_pickle(shape: bytes, size: int) -> bytes:
    """Protocol 4 ``_reconstruct`` + BUILD with a hand-written shape and ``size`` data bytes."""
    return (
        b"\x80\x04\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93\x8c\x05numpy\x8c\x07"
        b"ndarray\x93K\x00\x85C\x01b\x87R(K\x01" + shape + b"\x8c\x05numpy\x8c\x05dtype\x93"
        b"\x8c\x02u1\x89\x88\x87R(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89B" + size.to_bytes(4, "little") + bytes(size) + b"tb."
    )


@pytest.mark.parametrize(
    ("shape", "size", "fragment"),
    [
        (b"J\x00\x00\x00\x40\x85", 2, "an array of shape (1073741824,) holding 2 bytes, not"),
        (b"J\xff\xff\xff\xff\x85", 0, "an array shape (-1,) with a negative size"),
        (b"N\x85", 0, "an array shape (None,) that is not a tuple of sizes"),
        (b"(" + b"K\x01" * 40 + b"t", 1, "that is not a tuple of sizes"),
    ],
)
def test_an_array_state_is_checked_before_numpy_sees_it(
    shape: bytes, size: int, fragment: str
) -> None:
    good = _array_pickle(b"K\x02\x85", 2)  # the control: the same pickle with a good shape
    assert np.array_equal(pickle.loads(good), np.zeros(2, np.uint8))
    assert np.array_equal(unpickle_batch(Path("x"), good), np.zeros(2, np.uint8))
    with pytest.raises(ReproError) as err:
        unpickle_batch(Path("x"), _array_pickle(shape, size))
    assert fragment in str(err.value) and "\n" not in str(err.value)


# --- forged sizes and nesting: bounded time and memory, no crash -------------------------------


def test_a_forged_memo_index_costs_neither_time_nor_memory(tmp_path: Path) -> None:
    """LONG_BINPUT 0x04000000 in a 9-byte file: plain pickle allocates and zeroes a 1 GiB memo
    for it (0x40000000: 16 GiB and 37 s); the restricted unpickler stores one dict entry."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02}r\x00\x00\x00\x04.")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ReproError, match=r"expected a dict with 'data' and 'labels', got \[\]"):
            read_batch(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 10 * 2**20


def test_a_deeply_nested_dict_key_is_refused_not_a_crash(tmp_path: Path) -> None:
    """Hashing a 300,000-deep tuple overflows the C stack (plain pickle segfaults on this)."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x04}N" + b"\x85" * 300_000 + b"K\x01s.")
    with pytest.raises(ReproError, match=r"its pickle holds a dict key of type tuple"):
        read_batch(path)


def test_deeply_nested_labels_are_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    nested = b"]" * 100_000 + b"a" * 99_999
    data = pickle.dumps(np.zeros((1, 3072), np.uint8), protocol=4)[11:-1]  # no PROTO, FRAME, STOP
    path.write_bytes(b"\x80\x04}(\x8c\x04data" + data + b"\x8c\x06labels" + nested + b"u.")
    with pytest.raises(ReproError, match=r"data_batch_1: 'labels' (is not|must be)"):
        read_batch(path)


# --- the official layout and the mini set read exactly as before -----------------------------


def _python2_copy(root: Path, n: int = 30) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A copy in the official files' own pickle layout (Python 2 cPickle, protocol 2)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    written = {}
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(python2_batch(x, y, [f"{name}_{i}.png" for i in range(n)]))
        written[name] = (x, y)
    meta = {"label_names": CLASS_NAMES, "num_cases_per_batch": n, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def test_the_official_python2_layout_loads_exactly_as_plain_pickle_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _python2_copy(tmp_path, n=300)  # 300 filenames: LONG_BINPUT memo entries too
    folder = tmp_path / "cifar-10-batches-py"
    for name, (x, y) in written.items():
        raw = (folder / name).read_bytes()
        plain, ours = pickle.loads(raw, encoding="latin1"), unpickle_batch(folder / name, raw)
        assert isinstance(ours, dict) and ours.keys() == plain.keys()
        assert np.array_equal(ours["data"], plain["data"]) and np.array_equal(ours["data"], x)
        assert ours["data"].flags.writeable and ours["labels"] == plain["labels"] == y
        assert ours["filenames"] == plain["filenames"]
    sums = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in written}
    monkeypatch.setattr(cifar10_mod, "OFFICIAL_MD5", sums)
    data = load_cifar10(tmp_path)
    assert data.official and data.classes == tuple(CLASS_NAMES)
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(data.train_images.numpy().reshape(-1, 3072), train)
    assert data.test_labels.tolist() == written["test_batch"][1]


@pytest.mark.parametrize("name", FILES[:2] + ("data_batch_5",))
def test_the_mini_set_reads_exactly_as_plain_pickle_reads_it(mini_root: Path, name: str) -> None:
    path = mini_root / "cifar-10-batches-py" / name
    raw = path.read_bytes()
    plain, ours = pickle.loads(raw, encoding="latin1"), unpickle_batch(path, raw)
    assert isinstance(ours, dict) and ours.keys() == plain.keys()
    assert ours["labels"] == plain["labels"] and ours["batch_label"] == plain["batch_label"]
    assert ours["data"].dtype == plain["data"].dtype and ours["data"].flags == plain["data"].flags
    assert np.array_equal(ours["data"], plain["data"])
    assert read_classes(path.parent) == tuple(CLASS_NAMES)


def test_a_fortran_order_or_big_endian_array_still_reads_as_numpy_wrote_it(tmp_path: Path) -> None:
    x = np.asfortranarray(np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072))
    write_batch(tmp_path / "data_batch_1", x, np.array([3, 4], dtype=">i2"))
    images, labels, _ = read_batch(tmp_path / "data_batch_1")
    assert np.array_equal(images.reshape(2, 3072), x) and labels.tolist() == [3, 4]
    assert torch.from_numpy(images).dtype == torch.uint8


# --- fuzzing: a damaged batch file loads as a valid batch or ends in one ReproError ------------


def _seeds() -> dict[str, tuple[bytes, np.ndarray, list[int]]]:
    """Small valid batch files (protocol 4 with 1 and 0 images; the official Python 2 layout)."""
    rng = np.random.default_rng(3)
    one = rng.integers(0, 256, (1, 3072), dtype=np.uint8)
    none = np.zeros((0, 3072), dtype=np.uint8)
    content = {"batch_label": "b", "data": one, "labels": [7]}
    return {
        "protocol4": (pickle.dumps(content, protocol=4), one, [7]),
        "protocol4-empty": (pickle.dumps({**content, "data": none, "labels": []}, 4), none, []),
        "python2": (python2_batch(one, [7], ["a.png"]), one, [7]),
    }


SEEDS = _seeds()


@st.composite
def damaged_batch(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed truncated, with bits flipped, or with a span replaced by random bytes. Positions
    favour the pickle's structure over the 3,072 pixel bytes (where any value is valid)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    raw, pixels, _ = SEEDS[name]
    start = raw.find(pixels.tobytes()) if pixels.size else len(raw)
    structure = [*range(min(start, len(raw))), *range(start + pixels.size, len(raw))]
    position = st.one_of(st.sampled_from(structure), st.integers(0, len(raw) - 1))
    return name, draw(damaged(raw, position))


def _load_or_one_error(folder: Path, case: tuple[str, bytes]) -> None:
    name, raw = case
    path = folder / "data_batch_1"
    path.write_bytes(raw)
    try:
        images, labels, md5 = read_batch(path)
    except ReproError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert ((labels >= 0) & (labels < 10)).all() and md5 == hashlib.md5(raw).hexdigest()
    seed, pixels, seed_labels = SEEDS[name]
    if raw == seed:
        assert np.array_equal(images.reshape(-1, 3072), pixels) and labels.tolist() == seed_labels


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=60, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_batch())
def test_a_damaged_batch_file_loads_as_a_valid_batch_or_fails_with_one_error(
    fuzz_dir: Path, case: tuple[str, bytes]
) -> None:
    _load_or_one_error(fuzz_dir, case)


@pytest.mark.slow
@settings(max_examples=1500, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_batch())
def test_many_damaged_batch_files_load_as_valid_batches_or_fail_with_one_error(
    fuzz_dir: Path, case: tuple[str, bytes]
) -> None:
    _load_or_one_error(fuzz_dir, case)
