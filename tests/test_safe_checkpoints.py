"""No checkpoint runs code: every reader loads with weights_only=True, refuses a pickle that asks
for more in one line naming the opt-in (`repro evaluate --trust-pickle`), and a damaged file
loads exactly as written or ends in one ReproError (fuzzed)."""

from __future__ import annotations

import functools
import io
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import one_clear_line, run_cli, run_repro
from data_helpers import write_cifar10
from fuzz_helpers import damaged, in_regions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trainer_helpers import tiny_args

from repro.cli import main
from repro.environment import environment
from repro.errors import ReproError
from repro.foreign.akamaster import AkamasterCheckpoint, load_akamaster
from repro.models import build_model
from repro.train.checkpoint import (
    SAFE_GLOBALS,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from repro.train.rng import rng_state, set_rng_state

ROOT = Path(__file__).resolve().parents[1]
OLD_RUN = ROOT / "tests" / "fixtures" / "old_format" / "run"


# --- files that carry a payload ------------------------------------------------------------


class ShellPayload:
    """Unpickling this runs ``touch MARKER`` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TouchPayload:
    """Unpickling this calls pathlib.Path.touch(MARKER): code without a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def evil_checkpoint(folder: Path, payload=ShellPayload, name: str = "evil.pt") -> Path:
    """A file shaped like one of ours whose pickle creates ``folder/MARKER`` when it is loaded."""
    path, marker = folder / name, folder / "MARKER"
    model = build_model("resnet_cifar", depth=8)
    state = {
        "format": "resnet-repro/1",
        "model_name": "resnet_cifar",
        "model_kwargs": {"depth": 8},
        "model": {**model.state_dict(), "bn1.extra": payload(marker)},
    }
    torch.save(state, path)
    assert not marker.exists()
    return path


@pytest.mark.parametrize("payload", [ShellPayload, TouchPayload])
def test_a_checkpoint_with_a_code_payload_is_refused_before_it_runs(tmp_path, payload):
    evil = evil_checkpoint(tmp_path, payload)
    with pytest.raises(ReproError) as err:
        load_checkpoint(evil)
    message = str(err.value)
    assert "refused" in message and "--trust-pickle" in message and str(evil) in message
    assert "\n" not in message and "\x1b" not in message
    assert not (tmp_path / "MARKER").exists()


def test_repro_evaluate_refuses_a_code_payload_in_one_line(tmp_path, capsys):
    evil = evil_checkpoint(tmp_path)
    line = one_clear_line(*run_cli(capsys, str(evil)))
    assert "refused" in line and "posix.system" in line and "--trust-pickle" in line
    assert not (tmp_path / "MARKER").exists()


def test_repro_evaluate_from_akamaster_refuses_a_code_payload_in_one_line(tmp_path, capsys):
    evil = evil_checkpoint(tmp_path, TouchPayload, name="resnet20.th")
    line = one_clear_line(*run_cli(capsys, str(evil), "--from", "akamaster", "--model", "resnet20"))
    assert "refused" in line and "--trust-pickle" in line
    assert not (tmp_path / "MARKER").exists()


def test_a_code_payload_is_refused_by_repro_evaluate_as_a_process(tmp_path):
    evil = evil_checkpoint(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "repro", "evaluate", str(evil)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], done.stderr
    assert not (tmp_path / "MARKER").exists()


def test_resume_and_analyze_refuse_a_code_payload(tmp_path, capsys):
    """The same reader serves `repro train --resume` and `repro analyze`."""
    run, data = tmp_path / "run", write_cifar10(tmp_path / "data")
    shutil.copytree(OLD_RUN, run)
    evil_checkpoint(run, name="final.pt")  # read first when a run resumes
    line = one_clear_line(
        *run_repro(capsys, "train", "--out", str(run), "--resume", "--data-root", str(data))
    )
    assert "refused" in line and "final.pt" in line
    line = one_clear_line(
        *run_repro(
            capsys, "analyze", "layer-response", str(run / "final.pt"), "--data-root", str(data)
        )
    )
    assert "refused" in line
    assert not (run / "MARKER").exists()


# --- the opt-in ------------------------------------------------------------------------------


@dataclass
class RunNote:
    """A harmless object of this module's: loading it needs full unpickling."""

    text: str


def test_the_payload_runs_under_trust_pickle_so_the_refusal_is_what_stops_it(tmp_path, capsys):
    evil = evil_checkpoint(tmp_path, TouchPayload)
    one_clear_line(*run_cli(capsys, str(evil), "--trust-pickle"))  # not a checkpoint after all
    assert (tmp_path / "MARKER").exists()


def test_trust_pickle_is_what_lets_a_plain_pickle_checkpoint_load(
    tmp_path, synthetic_cifar, capsys
):
    path = tmp_path / "noted.pt"
    model = build_model("resnet_cifar", depth=8)
    state = {"model_name": "resnet_cifar", "model_kwargs": {"depth": 8}}
    save_checkpoint({**state, "model": model.state_dict(), "note": RunNote("hi")}, path)
    args = (str(path), "--data-root", str(synthetic_cifar), "--device", "cpu", "--json")
    line = one_clear_line(*run_cli(capsys, *args))
    assert "RunNote" in line and "--trust-pickle" in line
    rc, out, err = run_cli(capsys, *args, "--trust-pickle")
    assert rc == 0, err
    assert load_checkpoint(path, trust_pickle=True)["note"] == RunNote("hi")


# --- what checkpoints hold -----------------------------------------------------------------


def _names(entries: list) -> set[str]:
    return {e[1] if isinstance(e, tuple) else f"{e.__module__}.{e.__qualname__}" for e in entries}


def test_a_new_training_checkpoint_holds_only_tensors_and_plain_values(synthetic_cifar, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(synthetic_cifar, out, "--max-steps", "6")) == 0
    for name in ("last.pt", "best.pt", "final.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(out / name) == []
    assert type(load_checkpoint(out / "last.pt")["config"]["environment"]["torch"]) is str


def test_old_runs_need_only_the_registered_safe_globals(tmp_path):
    for name in ("last.pt", "best.pt", "final.pt"):
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(OLD_RUN / name))
        assert needed and needed <= _names(SAFE_GLOBALS), needed - _names(SAFE_GLOBALS)
        assert load_checkpoint(OLD_RUN / name)["format"] == "resnet-repro/1"
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(OLD_RUN / "last.pt", weights_only=True)  # without the list they fail


def test_the_environment_record_stores_torchs_version_as_a_plain_str():
    assert type(environment("cpu")["torch"]) is str


def _draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_rng_state_survives_a_weights_only_round_trip_and_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = _draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == expected


def test_set_rng_state_still_accepts_the_old_numpy_tuple():
    np.random.seed(5)
    old = {**rng_state(), "numpy": np.random.get_state()}  # what checkpoints held before
    expected = _draws()
    set_rng_state(old)
    assert _draws() == expected


# --- fuzzing the reader -----------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` can dress it as an error."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def _alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.lru_cache(maxsize=1)
def pristine() -> tuple[bytes, dict, tuple[tuple[int, int], ...]]:
    """A depth-8 ResNet checkpoint as save_checkpoint writes it, its state, and the byte ranges
    worth aiming at: the whole file, the pickle record, the zip's central directory."""
    torch.manual_seed(0)
    state = {
        "model_name": "resnet_cifar",
        "model_kwargs": {"depth": 8},
        "model": build_model("resnet_cifar", depth=8).state_dict(),
        "config": {"model": "resnet_cifar", "mean": [0.5] * 3, "std": [0.25] * 3},
        "iteration": 123,
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(state, Path(tmp) / "m.pt")
        raw = (Path(tmp) / "m.pt").read_bytes()
        with zipfile.ZipFile(Path(tmp) / "m.pt") as archive:
            pkl = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
            start_dir = archive.start_dir
    pickle_end = pkl.header_offset + 30 + len(pkl.filename) + len(pkl.extra) + pkl.compress_size
    regions = ((0, len(raw)), (0, pickle_end), (start_dir, len(raw)))
    return raw, state, regions


@functools.lru_cache(maxsize=1)
def pristine_theirs() -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """A ResNet-20 in akamaster's layout and legacy (non-zip, checksum-free) format, and the
    byte ranges worth aiming at: the whole file, its pickles at the start, the end."""
    torch.manual_seed(0)
    theirs = {
        "module." + ("linear." + k[3:] if k.startswith("fc.") else k): v
        for k, v in build_model("resnet20").state_dict().items()
    }
    buffer = io.BytesIO()
    state = {"state_dict": theirs, "best_prec1": 91.7}
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    raw = buffer.getvalue()
    return raw, ((0, len(raw)), (0, 4096), (len(raw) - 2048, len(raw)))


def pristine_ours() -> tuple[bytes, tuple[tuple[int, int], ...]]:
    raw, _, regions = pristine()
    return raw, regions


def damaged_file(original=pristine_ours) -> st.SearchStrategy[bytes]:
    """The ``original()`` file truncated, with bits flipped, or with a span replaced, aimed at
    the byte ranges that hold its structure."""
    raw, regions = original()
    return damaged(raw, in_regions(regions))


@contextmanager
def one_outcome(path: Path) -> Iterator[None]:
    """What a reader does with a damaged file: no hang, no warning (a second line), and any
    error a single-line ReproError naming the file; any other exception fails the test."""
    with warnings.catch_warnings(record=True) as caught, time_limit(60):
        warnings.simplefilter("always")
        try:
            yield
        except ReproError as exc:
            assert "\n" not in str(exc) and "\x1b" not in str(exc) and str(path) in str(exc)
    assert not caught, [str(w.message) for w in caught]


def loads_exactly_or_fails_in_one_line(data: bytes) -> None:
    _, written, _ = pristine()
    loaded = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        path.write_bytes(data)
        with one_outcome(path):
            loaded = model_from_checkpoint(path)
    if loaded is not None:  # the checksums make every load an exact one
        model, state = loaded
        assert state["iteration"] == written["iteration"] and state["config"] == written["config"]
        weights = model.state_dict()
        assert all(torch.equal(weights[k], v) for k, v in written["model"].items())


def theirs_load_or_fail_in_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet20.th"
        path.write_bytes(data)
        with one_outcome(path):  # loads may hold other weights: the legacy format has no checksum
            assert isinstance(load_akamaster(path, "resnet20"), AkamasterCheckpoint)


def test_a_record_marked_as_a_folder_is_refused_not_loaded_as_uninitialised_memory(tmp_path):
    """Found by the fuzzing below: one bit (the DOS folder attribute of a tensor's zip record)
    makes torch.load return the tensor's uninitialised memory as its weights."""
    raw, _, (_, _, (start_dir, _)) = pristine()
    entry = raw.rindex(b"PK\x01\x02", start_dir, raw.index(b"data/25", start_dir))
    damaged = bytearray(raw)
    damaged[entry + 38] |= 0x10  # the central directory's external attributes
    path = tmp_path / "m.pt"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ReproError, match="'archive/data/25' is marked as a folder"):
        load_checkpoint(path)


FUZZ = settings(
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ, max_examples=50)
@given(damaged_file())
def test_a_damaged_checkpoint_loads_exactly_or_ends_in_one_repro_error(data):
    loads_exactly_or_fails_in_one_line(data)


@settings(FUZZ, max_examples=25)
@given(damaged_file(pristine_theirs))
def test_a_damaged_akamaster_file_loads_or_ends_in_one_repro_error(data):
    theirs_load_or_fail_in_one_line(data)


@pytest.mark.slow
@settings(FUZZ, max_examples=3000)
@given(damaged_file())
def test_a_damaged_checkpoint_loads_exactly_or_ends_in_one_repro_error_thoroughly(data):
    loads_exactly_or_fails_in_one_line(data)


@pytest.mark.slow
@settings(FUZZ, max_examples=2000)
@given(damaged_file(pristine_theirs))
def test_a_damaged_akamaster_file_loads_or_ends_in_one_repro_error_thoroughly(data):
    theirs_load_or_fail_in_one_line(data)
