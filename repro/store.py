"""The run store, in one place: the run directory's layout, reading and writing of every file in
it, one writer per folder (``RunLock``), and the one loader of a run and of a matrix. It sits just
above :mod:`repro.fileio` and imports nothing of training; the decision to start, resume or leave
a finished run is training's (:mod:`repro.train.resume`).

One training run (``repro train --out RUN``)::

    RUN/config.json      the resolved recipe, runtime and environment, in full
    RUN/metrics.jsonl    one record per evaluation (see repro.fileio for the torn-line policy)
    RUN/last.pt          the training state, for exact resume
    RUN/best.pt          the state at the best evaluation (by validation error when there is a split)
    RUN/final.pt         the state when the schedule ended: present only for a finished run
    RUN/.lock            flock-ed by the one process writing the folder (its pid inside)

A matrix (``repro reproduce --out ROOT``) holds one run per model and seed::

    ROOT/summary.json               what the matrix is (experiment, preset, seeds, models) + results
    ROOT/<model>/seed<k>/           one run folder as above
    ROOT/logs/<model>-seed<k>.log   the trainer's output
    ROOT/layer_response.json/.png   Fig. 7, written by `repro analyze layer-response`
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.fileio import (
    INTEGER,
    NUMBER,
    append_jsonl,
    path_problem,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
    wrong_types,
)
from repro.run_config import (
    CONFIG,
    EvalRecord,
    RunConfig,
    parse_run_config,
    run_config_problems,
)

METRICS, LAST, BEST, FINAL = (
    "metrics.jsonl",
    "last.pt",
    "best.pt",
    "final.pt",
)
SUMMARY = "summary.json"
LAYER_RESPONSE_JSON, LAYER_RESPONSE_PNG = "layer_response.json", "layer_response.png"
LOGS = "logs"
LOCK = ".lock"  # held (flock) by the one process that writes the folder
SEED_DIR = re.compile(r"^seed(\d+)$")
MODEL_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")  # one path component, not . or ..

# The types every reader of a run may rely on; a file that holds anything else is reported (run
# files) or refused (summary.json, layer_response.json) when it is read, never met downstream
# (config.json's: repro.run_config).
METRIC_TYPES: dict[str, tuple[Any, ...]] = {
    "iteration": (INTEGER,),
    **{k: (NUMBER, None) for k in ("epoch", "lr", "train_loss", "train_error", "val_loss",
                                   "val_error", "test_loss", "test_error", "seconds",
                                   "images_per_s")},
}  # fmt: skip
SUMMARY_TYPES: dict[str, tuple[Any, ...]] = {
    "experiment": (str,), "preset": (str,), "seeds": (list,), "models": (dict, list),
    "comparable_to_paper": (bool, None), "complete": (bool, None), "forced": (bool, None),
    "data_official": (bool, None), "data_counts": (dict, None), "data_root": (str, None),
    "environment": (dict, None), "preset_description": (str,), "status": (str,),
    "failed": (list,), "wall_seconds": (NUMBER, None), "parallel": (INTEGER, None),
    "training_seconds": (NUMBER, None),
}  # fmt: skip


# ---------------------------------------------------------------- paths


def seed_dir(root: Path, model: str, seed: int) -> Path:
    """The run folder of one model and seed inside a matrix."""
    return Path(root) / model / f"seed{seed}"


def log_path(root: Path, model: str, seed: int) -> Path:
    """The trainer's log of one model and seed inside a matrix."""
    return Path(root) / LOGS / f"{model}-seed{seed}.log"


def seed_of(run: Path) -> int | None:
    """The seed a ``seed<k>`` folder name says, else None."""
    match = SEED_DIR.match(Path(run).name)
    return int(match.group(1)) if match else None


def run_checkpoint(run: Path) -> Path | None:
    """A run's ``final.pt``, else its ``last.pt`` (an unfinished run), else None."""
    for name in (FINAL, LAST):
        if (Path(run) / name).is_file():
            return Path(run) / name
    return None


# ---------------------------------------------------------------- one run: config and metrics


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a metrics.jsonl (``path`` may be the file or its run folder)."""
    path = Path(path)
    rows, _ = read_jsonl(path / METRICS if path.is_dir() else path)
    return rows


def append_metrics(run: Path, record: EvalRecord) -> None:
    append_jsonl(Path(run) / METRICS, record.to_dict())


def reset_metrics(run: Path) -> None:
    """An empty metrics.jsonl for a run that starts from iteration 0."""
    write_jsonl(Path(run) / METRICS, [])


def truncate_metrics(run: Path, iteration: int) -> int:
    """Keep only the records up to ``iteration`` (atomic rewrite); returns how many remain."""
    kept = [
        r for r in read_metrics(Path(run) / METRICS) if int(r.get("iteration", -1)) <= iteration
    ]
    write_jsonl(Path(run) / METRICS, kept)
    return len(kept)


def expected_end(config: RunConfig | Mapping[str, object]) -> int | None:
    """The iteration the schedule ends at: ``total_iterations``, cut by ``max_steps`` if set
    (of a record, or of a config.json object as :class:`Run` keeps it)."""
    typed = config if isinstance(config, RunConfig) else parse_run_config(config)
    return typed.expected_end()


# ---------------------------------------------------------------- one writer per folder


class RunLock:
    """An exclusive OS lock on ``folder/.lock`` for the life of this process: a second writer is
    refused in one line naming the holder's pid; a killed holder leaves no stale lock (the OS
    releases it with the process)."""

    def __init__(self, folder: Path, what: str = "trainer") -> None:
        self.path, self.what = Path(folder) / LOCK, what
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ReproError(
                f"{self.path.parent} is in use by another {self.what} (pid {holder}); wait for it "
                "to finish or stop it, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _open(self) -> int:
        """The lock file's descriptor: never through a symbolic link (whose target would be
        truncated and overwritten with a pid), never a folder, FIFO or device."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        remove = "remove it if nothing of yours is in it, and run again"
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            problem = "is a symbolic link" if os.path.islink(self.path) else path_problem(self.path)
            if problem is None or problem == "does not exist":
                problem = f"cannot be created ({exc.strerror or exc})"
                remove = "fix the folder's permissions or use another folder"
            raise ReproError(
                f"{self.path} {problem}: it cannot be the run's lock; {remove}"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            problem = path_problem(self.path)
            raise ReproError(f"{self.path} {problem}: it cannot be the run's lock; {remove}")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an atomic write killed mid-way left behind (call it
    with the folder's lock held, so no live writer owns them)."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------- a folder to write in


def check_writable(out: Path, create: bool = True) -> None:
    """Prove a file can be written in ``out`` (created first when ``create``; else probed in its
    nearest existing ancestor, leaving nothing behind); ReproError otherwise."""
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} exists and is not a folder")
    probe_in = out
    if not create:
        probe_in = next((p for p in (out, *out.parents) if p.exists()), Path("."))
        if not probe_in.is_dir():
            raise ReproError(f"cannot write to --out {out}: {probe_in} is a file, not a folder")
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReproError(
            f"cannot write to --out {out} ({exc.strerror or exc}); choose a writable folder"
        ) from None


# ---------------------------------------------------------------- reading finished work


@dataclass
class Run:
    """One run folder as read back: config.json (``config`` its object as written,
    ``run_config`` the same typed; both None when it is missing or wrong), metrics.jsonl records,
    whether it finished (final.pt exists, or an import says so), and every problem met while
    reading (never raised: the claims report them)."""

    path: Path
    config: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    finished: bool
    problems: list[str] = field(default_factory=list)
    run_config: RunConfig | None = None

    def __post_init__(self) -> None:
        if self.run_config is None and self.config is not None:
            self.run_config = parse_run_config(self.config, str(self.path / CONFIG))

    @property
    def imported(self) -> dict[str, Any] | None:
        """The ``imported`` record of a run `repro import-run` wrote (None for our own runs)."""
        record = self.run_config.imported if self.run_config else None
        return dict(record) if record is not None else None


def load_run(path: Path) -> Run:
    """Read one run folder without raising: problems are collected instead."""
    path = Path(path)
    problems: list[str] = []
    config = None
    if (path / CONFIG).is_file():
        try:
            config = read_json(path / CONFIG)
        except ReproError as exc:
            problems.append(str(exc))
        if config is not None and run_config_problems(config):
            problems += run_config_problems(config)
            config = None  # a config with wrong types is reported, never used
    else:
        problems.append(f"{CONFIG} is missing")
    rows, problems_in_metrics = read_jsonl(path / METRICS)
    metrics = []
    for i, row in enumerate(rows, 1):
        wrong = wrong_types(row, METRIC_TYPES, f"{METRICS} record {i}")
        problems_in_metrics += wrong or (
            [] if "iteration" in row else [f"{METRICS} record {i} has no iteration"]
        )
        if not wrong and "iteration" in row:
            metrics.append(row)
    finished = (path / FINAL).is_file()
    run = Run(path, config, metrics, finished, problems + problems_in_metrics)
    if run.imported is not None and run.imported.get("finished") is True:
        run.finished = True  # an import has no final.pt: its user said the schedule ended
    return run


@dataclass
class Matrix:
    """A `repro reproduce` folder: what summary.json says it is, and every model/seed run."""

    root: Path
    experiment: str
    preset: str
    seeds: list[int]
    runs: dict[str, dict[int, Run]]
    summary: dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_summary(root: Path) -> dict[str, Any]:
    """A matrix's summary.json, checked for the fields that say what the matrix is."""
    root = Path(root)
    if not root.is_dir():
        raise ReproError(f"run directory {root} does not exist")
    path = root / SUMMARY
    if not path.is_file():
        raise ReproError(
            f"{path} is missing: {root} is not a `repro reproduce` run directory "
            "(run `repro reproduce --experiment E --preset P --out DIR` first)"
        )
    summary = read_json(path)
    for key in ("experiment", "preset", "seeds", "models"):
        if key not in summary:
            raise ReproError(f"{path} has no {key!r}; it was not written by `repro reproduce`")
    wrong = wrong_types(summary, SUMMARY_TYPES, str(path))
    if not wrong:
        wrong = [f"{path}: 'seeds' holds {str(s)[:24]}, not a seed from 0 to 2**63-1"
                 for s in summary["seeds"] if not _is_int(s) or not 0 <= s < 2**63]  # fmt: skip
    if not wrong:  # a model is one folder of the matrix: never a path that leads out of it
        wrong = [f"{path}: 'models' names {str(m)[:40]!r}, not a model folder name"
                 for m in summary["models"] if not isinstance(m, str) or not MODEL_DIR.match(m)]  # fmt: skip
    if wrong:
        raise ReproError(f"{wrong[0]}; write it again with `repro reproduce` (same command)")
    return summary


def write_summary(root: Path, summary: Mapping[str, object]) -> None:
    write_json(Path(root) / SUMMARY, summary)


def load_runs(root: Path, models: Iterable[str], seeds: Iterable[int]) -> dict[str, dict[int, Run]]:
    """Every model/seed run folder of a matrix, read: ``{model: {seed: Run}}``."""
    seeds = list(seeds)
    return {m: {s: load_run(seed_dir(root, m, s)) for s in seeds} for m in models}


def load_matrix(root: Path) -> Matrix:
    """The one loader of a matrix: the models and seeds its summary.json names, each run read."""
    root = Path(root)
    summary = read_summary(root)
    try:
        seeds = [int(s) for s in summary["seeds"]]
        models = [m for m in summary["models"] if isinstance(m, str)]
        if len(models) != len(summary["models"]):
            raise ValueError
    except (TypeError, ValueError):
        raise ReproError(
            f"{root / SUMMARY}: 'seeds' and 'models' must list seeds and models"
        ) from None
    runs = load_runs(root, models, seeds)
    return Matrix(root, str(summary["experiment"]), str(summary["preset"]), seeds, runs, summary)


def file_digest(path: Path) -> str:
    """SHA-256 of a file: the identity of the checkpoint a result was computed from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_layer_response(root: Path) -> dict[str, Any] | None:
    """The layer_response.json of a folder (None when there is none)."""
    path = Path(root) / LAYER_RESPONSE_JSON
    if not path.is_file():
        return None
    doc = read_json(path)
    problem = _layer_response_problem(doc)
    if problem:
        raise ReproError(f"{path}: {problem}; run `repro analyze layer-response` again")
    return doc


def _layer_response_problem(doc: Mapping[str, object]) -> str | None:
    """What makes a layer_response.json unusable (None when it is sound)."""
    models = doc.get("models")
    if not isinstance(models, dict):
        return "no 'models' object"
    for name, model in models.items():
        if not isinstance(model, dict) or not isinstance(model.get("seeds", {}), dict):
            return f"model {name!r} is not an object with a 'seeds' object"
        wrong = wrong_types(model, {"mean_std": (NUMBER,)}, f"model {name!r}")
        for seed, entry in model.get("seeds", {}).items():
            if not isinstance(entry, dict):
                return f"model {name!r} {seed!r} is not an object"
            spec = {"mean_std": (NUMBER,), "checkpoint_sha256": (str,)}
            wrong += wrong_types(entry, spec, f"model {name!r} {seed!r}")
        if wrong:
            return wrong[0]
    return None


def write_layer_response(root: Path, doc: Mapping[str, object]) -> None:
    write_json(Path(root) / LAYER_RESPONSE_JSON, doc)
