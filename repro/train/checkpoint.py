"""Checkpoints: written atomically, read back without running code, one clear error for the rest.

A checkpoint is a dict with at least ``format`` (:data:`FORMAT`), ``model_name``, ``model_kwargs``
and ``model`` (the state dict); training checkpoints add optimiser, scheduler, loader and RNG states.
Everything in it is a tensor or a plain Python value (str, int, float, bool, None, list, tuple,
dict), so :func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``: a pickle that
asks for anything else (a code payload, a class of some other project) is refused before it runs,
unless the caller opts in with ``trust_pickle`` (``repro evaluate --trust-pickle``).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn
from torch.torch_version import TorchVersion

from repro.data.loader import LoaderState
from repro.data.normalization import NORMALIZATIONS
from repro.errors import ReproError
from repro.fileio import atomic_write, path_problem
from repro.models import build_model
from repro.recipes import WarmupState
from repro.run_config import parse_run_config, run_config_problems
from repro.store import BEST, FINAL, LAST  # the store owns the names
from repro.train.metrics import MeterState
from repro.train.rng import RngState

FORMAT = "resnet-repro/1"
TRUST_FLAG = "--trust-pickle"
_NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's ndarray unpickler, on every version

# The ONE list of globals, beyond tensors and plain Python values, that a checkpoint may name when
# it is read with weights_only=True. Each rebuilds a value from data and calls nothing the file
# chooses. Checkpoints written now need none of them; runs written before (tests/fixtures/
# old_format, resumed by tests/test_old_runs.py) need them; akamaster's published files none.
SAFE_GLOBALS: list[Any] = [
    # environment["torch"] was torch.__version__: TorchVersion, a str subclass that only adds
    # version comparisons (now stored as str(torch.__version__)).
    TorchVersion,
    # rng["numpy"] was np.random.get_state(): ("MT19937", a uint32 key array, ints, a float). The
    # array pickles as _reconstruct(ndarray, (0,), b"b") then __setstate__(shape, dtype, raw
    # bytes): an allocation and a copy of bytes. numpy >= 2 spells the function numpy._core...,
    # numpy 1 numpy.core...: one function under both names, so runs of either numpy resume.
    (_NUMPY_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (_NUMPY_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    # The array's dtype('<u4'), rebuilt from its type code, and its class (numpy.dtypes.
    # UInt32DType since numpy 1.25), on which the unpickler sets the byte order.
    np.dtype,
    type(np.dtype(np.uint32)),
]
# torch names the global it refused (all versions >= 2.4); a garbled name is damage, not a refusal
_REFUSED = re.compile(r"GLOBAL ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*) (?:was not|whose module)")
_INNER = re.compile(r"WeightsUnpickler error:\s*(.+)", re.DOTALL)
_ZIP_MAGIC = b"PK\x03\x04"
_DOS_DIRECTORY = 0x10  # the external-attribute bit that makes a zip record a folder
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class SchedulerState(TypedDict):
    warmup: WarmupState
    lr: float  # the lr of the next step (informative: resuming recomputes it)


class MetricsState(TypedDict):
    """The running sums and the best-so-far of a training run (the Trainer's LoopState)."""

    meter: MeterState  # since the last evaluation
    window: MeterState  # since the last warm-up check
    seconds: float  # training time so far
    best_value: float
    best_iteration: int | None
    bad_evals: int
    stop_reason: str | None


class TrainingState(TypedDict):
    """What resuming needs to continue bit-identically: the Trainer's ``state_dict()``.
    ``optimizer`` and ``scaler`` are torch's own state dicts."""

    model_name: str
    model_kwargs: dict[str, object]
    config: dict[str, object]  # config.json's object (repro.run_config.RunConfig.to_dict)
    model: dict[str, torch.Tensor]
    iteration: int
    optimizer: dict[str, Any]
    scheduler: SchedulerState
    loader: LoaderState
    scaler: dict[str, Any] | None
    rng: RngState
    metrics_state: MetricsState
    best_by: str
    mean_image: torch.Tensor | None  # per-pixel-mean runs (Sec. 3.4): the image subtracted


class DDPAgreement(TypedDict):
    world_size: int
    max_rank_difference: float  # between the ranks' weights at the end (0.0: in agreement)


class CheckpointExtras(TypedDict, total=False):
    """What best.pt (``best_value``, ``metrics``) and final.pt (``stop_reason``, ``ddp``) add."""

    best_value: float
    metrics: dict[str, float | int | None]  # the metrics.jsonl record of that evaluation
    stop_reason: str
    ddp: DDPAgreement


class Checkpoint(TrainingState, CheckpointExtras):
    """last.pt (no extras), best.pt and final.pt."""


def save_checkpoint(state: Checkpoint, path: str | os.PathLike) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically. It is serialised in memory and
    written by Python, so a full disk or a file-size limit is an OSError (atomic_write's one
    line), not torch's "unexpected pos" RuntimeError."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def exception_reason(exc: BaseException, limit: int = 120) -> str:
    """``Type: message`` for an error line: torch's weights-only preamble and terminal escapes
    dropped, the first line only, cut at a word boundary."""
    text = _ANSI.sub("", str(exc))
    inner = _INNER.search(text)
    if inner:
        text = inner.group(1)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _refused_global(exc: Exception) -> str | None:
    """The global the weights-only unpickler refused, if that is why ``exc`` was raised."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    found = _REFUSED.search(_ANSI.sub("", str(exc)))
    return found.group(1) if found else None


def _folder_message(path: Path) -> str:
    inside = [path / name for name in (FINAL, LAST, BEST) if (path / name).is_file()]
    if inside:
        return f"checkpoint {path} is a folder, not a checkpoint file; pass {inside[0]}"
    return f"checkpoint {path} is a folder, not a checkpoint file; pass a .pt file"


def corrupt_advice(path: Path) -> str:
    """What to do about an unreadable checkpoint: another one of its run, or a fresh start."""
    others = [n for n in (BEST, FINAL, LAST) if n != path.name and (path.parent / n).is_file()]
    use = f"use another checkpoint of its run ({', '.join(others)})" if others else ""
    if path.name == LAST:
        return "delete it to train the run again from the start" + (f", or {use}" if use else "")
    return use or "use an intact copy of it"


def verify_checksums(path: Path) -> None:
    """Read every record of a zip checkpoint against its CRC-32, which torch.load never checks:
    a flipped bit in a tensor becomes an error instead of a silently different weight. A record
    marked as a folder is refused too: torch would load it as uninitialised memory.

    Records with CRC 0 were written without checksums (``torch.serialization.
    set_crc32_options(False)``) and are skipped; legacy non-zip files (akamaster's) have none.
    Raises ``zipfile.BadZipFile`` (or what zipfile raises on a mangled directory).
    """
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(4) == _ZIP_MAGIC:  # torch's own error for this is "Invalid argument"
                raise zipfile.BadZipFile("a zip archive that lacks its end: cut short")
        return
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.file_size > size:
                # torch stores records uncompressed: one larger than the whole file is a
                # compressed record that would inflate in memory (2 GiB from 2.7 MB, found by a
                # probe); refused before anything is inflated
                raise zipfile.BadZipFile(
                    f"record {info.filename!r} would inflate to {info.file_size} bytes, more than "
                    f"the whole {size}-byte file"
                )
            if info.is_dir() or info.external_attr & _DOS_DIRECTORY:
                # torch's zip reader (miniz) copies nothing out of a "folder" and hands back the
                # tensor's uninitialised memory as its weights (found by fuzzing)
                raise zipfile.BadZipFile(f"record {info.filename!r} is marked as a folder")
            if info.CRC:
                with archive.open(info) as record:
                    while record.read(1 << 20):
                        pass


def _torch_load(path: Path, map_location: str | torch.device, trust_pickle: bool) -> Any:
    with warnings.catch_warnings():
        # Damaged bytes make torch's unpickler warn ("Detected pickle protocol 66", "TypedStorage
        # is deprecated", ...) before it fails or reads on; the outcome is checked, so a warning
        # would only be a second line beside the one error.
        warnings.simplefilter("ignore")
        if trust_pickle:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)


def read_torch_file(
    path: Path,
    map_location: str | torch.device = "cpu",
    trust_pickle: bool = False,
    advice: Callable[[Path], str] = corrupt_advice,
    opt_in: str = f"`repro evaluate {TRUST_FLAG}` (or `repro verify {TRUST_FLAG}`)",
) -> Any:
    """``torch.load(path)`` that runs no code of the file's: tensors, plain Python values and
    :data:`SAFE_GLOBALS` only, unless ``trust_pickle`` (full unpickling, for trusted files).

    Every failure is one ReproError: no such file, a folder, a refused pickle (naming what it
    asked for and the opt-in), or an unreadable file (with ``advice(path)``).
    """
    if path.is_dir():
        raise ReproError(_folder_message(path))
    problem = path_problem(path)
    if problem:  # a FIFO would block, /dev/zero fill the memory: named, never read
        raise ReproError(f"checkpoint {path} {problem}")
    try:
        verify_checksums(path)
        return _torch_load(path, map_location, trust_pickle)
    except Exception as exc:  # truncated zip, pickle garbage, a refused global, wrong file type
        if isinstance(exc, PermissionError):
            raise ReproError(f"checkpoint {path} cannot be read: permission denied") from None
        refused = None if trust_pickle else _refused_global(exc)
        if refused is not None:
            raise ReproError(
                f"checkpoint {path} is refused: its pickle asks for {refused}, which is not "
                f"tensor data and could run code while loading; if you trust its source, {opt_in} "
                "loads it anyway"
            ) from None
        raise ReproError(
            f"checkpoint {path} is truncated or corrupt, or not a PyTorch file "
            f"({exception_reason(exc)}); {advice(path)}"
        ) from None


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> dict:
    """Read a checkpoint this project wrote (see :func:`read_torch_file` for what may load);
    ReproError naming the file if it is not one, or not a whole one."""
    path = Path(path)
    state = read_torch_file(path, map_location, trust_pickle)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ReproError(
            f"checkpoint {path} was not written by resnet-repro (no format {FORMAT!r}); "
            + _foreign_advice(state, path)
        )
    for key in ("model_name", "model_kwargs", "model"):
        if key not in state:
            raise ReproError(f"checkpoint {path} is incomplete: it has no {key!r}")
    problem = _content_problem(state)
    if problem:
        raise ReproError(f"checkpoint {path} is corrupt: {problem}; {corrupt_advice(path)}")
    return state


def _foreign_advice(state: Any, path: Path) -> str:
    """Where a checkpoint of another code base goes: akamaster's layout (a ``state_dict`` record
    of a CIFAR net, no ImageNet ``fc``) to ``--from akamaster``, anything else (a bare or
    ImageNet state_dict) to `repro verify`, which maps any of them by structure."""
    inner = state.get("state_dict") if isinstance(state, dict) else None
    if isinstance(inner, dict) and not any(str(k).endswith("fc.weight") for k in inner):
        return (
            "for akamaster's published weights use `repro evaluate --from akamaster --model NAME`"
        )
    return (
        f"for another code base's weights (an ImageNet or torchvision state_dict, ...) use "
        f"`repro verify {path}`, which maps them onto the paper's nets by structure"
    )


def _content_problem(state: dict) -> str | None:
    """Why the model part of a checkpoint cannot be what save_checkpoint wrote, or None."""
    kwargs, weights = state["model_kwargs"], state["model"]
    if not isinstance(state["model_name"], str):
        return f"'model_name' is a {type(state['model_name']).__name__}, not a str"
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        return "'model_kwargs' is not a dict of named values"
    if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
        return "'model' is not a dict of named tensors"
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            return f"weight {key!r} is a {type(value).__name__}, not a tensor"
    return model_kwargs_problem(kwargs) or record_problem(state)


# Bounds on what a checkpoint's model_kwargs may ask for before anything is built: the paper's
# nets have 10 (CIFAR) or 1000 (ImageNet) classes and depths up to 1202; 10**13 classes would be
# an allocation of 10**13 x 64 floats before the weights are compared (found by a probe).
MODEL_KWARG_LIMITS: dict[str, tuple[int, int]] = {"num_classes": (1, 100_000), "depth": (8, 10_000)}
MEAN_IMAGE_SHAPE = (3, 32, 32)  # the per-pixel mean of CIFAR-10's 32x32 RGB images


def model_kwargs_problem(kwargs: Mapping[str, object], where: str = "'model_kwargs'") -> str | None:
    """What makes ``kwargs`` no model of this project (an int out of its range), or None."""
    for key, (low, high) in MODEL_KWARG_LIMITS.items():
        value = kwargs.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:20] + " ..."
            return f"{where} {key} is {shown}, expected an integer from {low} to {high}"
    return None


def mean_image_problem(image: Any) -> str | None:
    """What makes ``image`` no per-pixel mean image ([3, 32, 32] floats in [0, 1]), or None."""
    expected = f"expected a float tensor {list(MEAN_IMAGE_SHAPE)} of values in [0, 1]"
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        what = (
            f"a {image.dtype} tensor" if isinstance(image, torch.Tensor) else type(image).__name__
        )
        return f"'mean_image' is {what}, {expected}"
    if tuple(image.shape) != MEAN_IMAGE_SHAPE:
        return f"'mean_image' is {list(image.shape)}, {expected}"
    if not bool(torch.isfinite(image).all()) or image.min() < 0 or image.max() > 1:
        return f"'mean_image' holds NaN, infinite or out-of-range values, {expected}"
    return None


def _three_positive(values: Any, key: str) -> bool:
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        return False
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    low = 0.0 if key == "mean" else 1e-12  # a mean may be 0, a std must not
    return len(numbers) == 3 and all(np.isfinite(v) and low <= v <= 1e6 for v in numbers)


def record_problem(state: Mapping[str, object]) -> str | None:
    """What makes a checkpoint's ``config`` or ``mean_image`` unusable for every reader (type,
    shape, range), or None: one check before any reader (evaluate, analyze, resume) uses them."""
    config = state.get("config")
    if config is not None and not isinstance(config, dict):
        return f"'config' is a {type(config).__name__}, expected an object of the run's settings"
    problems = run_config_problems(config or {}, "'config'")
    if problems:
        return problems[0]
    recorded = parse_run_config(config or {}, "'config'")
    name = recorded.normalize
    if name is not None and name not in NORMALIZATIONS:
        return f"'config' normalize is {name!r}, expected one of {', '.join(NORMALIZATIONS)}"
    for key, values in (("mean", recorded.mean), ("std", recorded.std)):
        if values is not None and not _three_positive(values, key):
            rule = ">= 0" if key == "mean" else "> 0"
            return f"'config' {key} is {str(values)[:40]}, expected 3 finite numbers {rule}"
    if name == "per-pixel-mean" or state.get("mean_image") is not None:
        return mean_image_problem(state.get("mean_image"))
    return None


def _fit_problems(model: nn.Module, weights: Mapping[str, object]) -> list[str]:
    """Every way ``weights`` does not fit ``model``: missing and unexpected keys, then shapes."""
    expected = model.state_dict()
    problems = [f"it has no {k!r}" for k in expected if k not in weights]
    problems += [f"it has an unexpected {k!r}" for k in weights if k not in expected]
    for key, value in weights.items():
        if key in expected and (
            not isinstance(value, torch.Tensor) or value.shape != expected[key].shape
        ):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            problems.append(f"{key!r} is {shape}, the model needs {list(expected[key].shape)}")
    return problems


WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


def strip_wrapper_prefixes(key: str) -> str:
    """A state_dict key without the prefixes that DDP and torch.compile wrappers add (nested
    wrappers add several)."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def model_from_checkpoint(
    checkpoint: dict | str | os.PathLike,
    map_location: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint holds and load its weights; returns (model, checkpoint).
    A model that cannot be built, or weights that do not fit it, are one ReproError."""
    if isinstance(checkpoint, dict):
        state, source = checkpoint, "the checkpoint"
    else:
        state = load_checkpoint(checkpoint, map_location, trust_pickle)
        source = f"checkpoint {checkpoint}"
    name, kwargs = state["model_name"], state["model_kwargs"]
    described = f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    described = described if len(described) <= 80 else described[:76] + " ..."
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as exc:  # an unknown name, a kwarg the model does not take
        raise ReproError(
            f"{source} names a model this version cannot build, {described} "
            f"({exception_reason(exc)}); it is corrupt or from another version of resnet-repro"
        ) from None
    weights = {strip_wrapper_prefixes(k): v for k, v in state["model"].items()}
    problems = _fit_problems(model, weights)
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ReproError(
            f"{source}'s weights do not fit the model it names, {described}: {problems[0]}{more}; "
            "the file is corrupt or was edited: use another checkpoint"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # what the checks above do not foresee
        raise ReproError(
            f"{source}'s weights do not load into {described} ({exception_reason(exc)})"
        ) from None
    return model, state
