"""`repro import-run`: another code base's training logs as a run directory the claims and
`repro report` read.

Sources: a per-epoch ``metrics.json`` (a list of objects), a CSV file, a Caffe training log
(``*.log``: its ``Iteration N, lr = ...``, ``Train net output`` and ``Test net output`` lines,
:mod:`repro.foreign.caffe_log`), or TensorBoard event files (read with tensorboard's own
``EventAccumulator``; only when the ``tensorboard`` package is installed:
``pip install 'resnet-repro[tensorboard]'``). Each format is one entry of
:data:`repro.foreign.log_formats.LOG_FORMATS`: a new one is registered there, nothing here changes.

Every value is checked before anything is written: numbers finite, errors and accuracies within
0-100 %, iterations and epochs whole and >= 0; a bad one is one line naming the file, the column
and the row. An evaluation at iteration 0 (before any training step, e.g. Caffe's initial test)
is dropped and the import says so: it is no result of training.

Column names: every metric of ``metrics.jsonl`` (``epoch, iteration, lr, train_loss, train_error,
val_loss, val_error, test_loss, test_error, seconds, images_per_s``) and the accuracies
``train_acc, val_acc, test_acc`` are read from the column of the same name unless mapped
(``--map test_error=val_err --map train_acc=acc``); ``iteration`` also from ``step`` or
``global_step``. An accuracy becomes an error (100 - acc). Errors and accuracies are fractions
(0-1) or percent: ``--scale`` says which; ``auto`` takes fractions when every such value is at
most 1 and says so. Without an iteration column, iteration = epoch x ``--iterations-per-epoch``
(the row's position when there is no epoch column either).

An imported run has no checkpoint (final.pt is never faked): its config.json says
``imported: {source, format, lacks, finished, ...}``; the claims read ``lacks`` and call a claim
that needs what is missing "not assessable", never a pass.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.experiments import get_experiment, get_preset
from repro.fileio import write_jsonl
from repro.foreign.log_formats import find_log
from repro.matrix_summary import build_summary
from repro.recipes import RECIPE_FIELDS
from repro.run_config import parse_run_config, run_config_problems, write_run_config
from repro.store import (
    CONFIG,
    METRICS,
    check_writable,
    load_runs,
    seed_dir,
    seed_of,
    write_summary,
)
from repro.train.metrics import METRIC_KEYS

OUR_KEYS = METRIC_KEYS  # a metrics.jsonl record, as the trainer writes it
ACCURACIES = {"train_acc": "train_error", "val_acc": "val_error", "test_acc": "test_error"}
PERCENT_KEYS = ("train_error", "val_error", "test_error", *ACCURACIES)
ALIASES = {"iteration": ("iteration", "step", "global_step")}
# What a claim may need from a run; the ones an import has not are listed in imported.lacks.
NEEDED = ("train_error", "test_error", "train_loss", "test_loss", "lr")
RECIPE_KEYS = ("recipe", "epochs", "iterations", "milestones", "batch_size", "lr")


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``--map OURS=THEIRS`` options as {ours: theirs}; ReproError for an unknown key of ours."""
    mapping = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep or not theirs or ours not in (*OUR_KEYS, *ACCURACIES):
            raise ReproError(
                f"--map {item!r}: use OURS=THEIRS with OURS one of "
                f"{', '.join((*OUR_KEYS, *ACCURACIES))}"
            )
        mapping[ours] = theirs
    return mapping


def _number(value: Any, column: str, row: int, where: str) -> float:
    """A finite number from a log cell; ReproError naming the file, column and row."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except (ValueError, OverflowError):
        raise ReproError(
            f"{where}: column {column!r}, row {row}: {value!r} is not a number; fix the log"
        ) from None
    if not math.isfinite(number):
        raise ReproError(
            f"{where}: column {column!r}, row {row}: {value!r} is not a finite number (a diverged "
            "or unfinished log?); cut the log before it or fix the value"
        )
    return number


def _columns(rows: list[dict[str, Any]], mapping: dict[str, str], where: str) -> dict[str, str]:
    """{our key: their column} for every key the log has; a mapped column must exist."""
    present = set().union(*(r.keys() for r in rows))
    columns = {}
    for ours in (*OUR_KEYS, *ACCURACIES):
        if ours in mapping:
            if mapping[ours] not in present:
                raise ReproError(
                    f"{where}: --map {ours}={mapping[ours]}: the log has no column "
                    f"{mapping[ours]!r} (it has {', '.join(sorted(map(str, present)))})"
                )
            columns[ours] = mapping[ours]
            continue
        found = [c for c in ALIASES.get(ours, (ours,)) if c in present]
        if found:
            columns[ours] = found[0]
    return columns


def _table(
    rows: list[dict[str, Any]], columns: dict[str, str], where: str
) -> dict[str, list[float]]:
    """{our key: one number per row}; ReproError naming the file, column and row of a gap."""
    table: dict[str, list[float]] = {}
    for ours, col in columns.items():
        values = []
        for i, row in enumerate(rows, 1):
            if col not in row or row[col] in ("", None):
                raise ReproError(f"{where}: column {col!r} is missing in row {i}; fix the log")
            values.append(_number(row[col], col, i, where))
        table[ours] = values
    return table


def suggest(present: set, wanted: str, hints: tuple[str, ...]) -> str:
    """`` (e.g. --map wanted=COL)`` for a column whose name contains one of ``hints``."""
    names = sorted(map(str, present))
    close = [c for c in names if any(h in c.lower() for h in hints)]
    return f"; pass --map {wanted}={close[0]}" if close else f"; pass --map {wanted}=COLUMN"


ACCURACY_HINTS = ("acc", "top1", "top-1", "top_1", "prec")


def test_column_hint(present: set) -> str:
    """The ``--map`` for a log without a test error or accuracy column: an error-like column
    (``err``) as ``test_error``, else an accuracy-like one (``acc``, ``top1``, ``prec``) as
    ``test_acc``, those naming test/val first; a loss or a training column never."""
    names = [
        c for c in sorted(map(str, present)) if "loss" not in c.lower() and "train" not in c.lower()
    ]

    def first(hints: tuple[str, ...]) -> str | None:
        found = [c for c in names if any(h in c.lower() for h in hints)]
        found.sort(key=lambda c: not any(h in c.lower() for h in ("test", "val")))
        return found[0] if found else None

    if error := first(("err",)):
        return f"; pass --map test_error={error}"
    if accuracy := first(ACCURACY_HINTS):
        return f"; pass --map test_acc={accuracy} (an accuracy: error = 100 - acc)"
    return "; pass --map test_error=COLUMN (or --map test_acc=COLUMN for an accuracy)"


def _check_ranges(table: dict[str, list[float]], columns: dict[str, str], where: str) -> None:
    """Errors and accuracies within 0-100 % (after scaling), iterations and epochs >= 0 and
    whole; ReproError naming the file, column and row of the first that is not."""
    for key, values in table.items():
        col = columns.get(key, key)
        for i, v in enumerate(values, 1):
            if key in PERCENT_KEYS and v < 0:
                raise ReproError(
                    f"{where}: column {col!r}, row {i}: {v:g} is negative; an error or accuracy "
                    "is >= 0: fix the log"
                )
            if key in PERCENT_KEYS and v > 100.0:
                raise ReproError(
                    f"{where}: column {col!r}, row {i}: {v:g} % is outside 0-100 %; fix the log "
                    "or --scale (percent or fraction)"
                )
            if key in ("iteration", "epoch") and (v < 0 or (key == "iteration" and v != int(v))):
                raise ReproError(
                    f"{where}: column {col!r}, row {i}: {v:g} is not a whole number >= 0"
                )


def _scale(table: dict[str, list[float]], scale: str) -> tuple[float, str]:
    """The factor to percent and how it was decided."""
    if scale not in ("auto", "percent", "fraction"):
        raise ReproError(f"unknown --scale {scale!r}; choose auto, percent or fraction")
    values = [v for k in PERCENT_KEYS for v in table.get(k, []) if math.isfinite(v)]
    if scale == "auto":
        if not values:
            return 1.0, "percent (no error or accuracy column)"
        if max(values) <= 1.0:
            return 100.0, "fraction (detected: every error/accuracy value is at most 1)"
        return 1.0, "percent (detected: some error/accuracy value is above 1)"
    return (100.0 if scale == "fraction" else 1.0), f"{scale} (--scale)"


def _iterations(
    table: dict[str, list[float]], n: int, per_epoch: int | None, where: str, present: set
) -> list[int]:
    if "iteration" in table:
        return [int(v) for v in table["iteration"]]
    if per_epoch is None:
        hint = suggest(present, "iteration", ("iter", "step", "batch"))
        if hint.endswith("COLUMN"):
            hint = ""
        raise ReproError(
            f"{where}: no iteration or step column among {', '.join(sorted(map(str, present)))}"
            f"{hint}, or pass --iterations-per-epoch N (e.g. 391 for batch 128 on 50,000 images)"
        )
    if per_epoch < 1:
        raise ReproError(f"--iterations-per-epoch must be >= 1, got {per_epoch}")
    epochs = table.get("epoch") or [float(i) for i in range(1, n + 1)]
    return [round(e * per_epoch) for e in epochs]


def _without_iteration_0(
    rows: list[dict[str, Any]], column: str | None
) -> tuple[list[dict[str, Any]], int]:
    """The rows without those logged at iteration 0 (the untrained net: never a result of
    training, e.g. Caffe's initial test), and how many there were."""
    if column is None:
        return rows, 0

    def at_zero(row: dict[str, Any]) -> bool:
        try:
            return float(row.get(column)) == 0.0  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    kept = [r for r in rows if not at_zero(r)]
    return kept, len(rows) - len(kept)


def convert(
    rows: list[dict[str, Any]],
    mapping: dict[str, str],
    scale: str,
    per_epoch: int | None,
    where: str = "the log",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Our metrics.jsonl records from raw rows, and what the conversion decided."""
    if not rows:
        raise ReproError(f"{where} holds no rows")
    present = set().union(*(r.keys() for r in rows))
    columns = _columns(rows, mapping, where)
    if "test_error" not in columns and "test_acc" not in columns:
        raise ReproError(
            f"{where}: no test error or accuracy column among "
            f"{', '.join(sorted(map(str, present)))}{test_column_hint(present)}"
        )
    rows, dropped = _without_iteration_0(rows, columns.get("iteration"))
    if not rows:
        raise ReproError(f"{where} holds no evaluation after iteration 0")
    table = _table(rows, columns, where)
    _check_ranges(table, columns, where)  # negative values and bad iterations, before scaling
    factor, how = _scale(table, scale)
    for key in PERCENT_KEYS:
        if key in table:
            table[key] = [v * factor for v in table[key]]
    _check_ranges({k: v for k, v in table.items() if k in PERCENT_KEYS}, columns, where)
    for acc, err in ACCURACIES.items():
        if acc in table and err not in table:
            table[err] = [100.0 - v for v in table.pop(acc)]
    iterations = _iterations(table, len(rows), per_epoch, where, present)
    records = [{k: table[k][i] for k in OUR_KEYS if k in table} for i in range(len(rows))]
    for record, iteration in zip(records, iterations):
        record["iteration"] = iteration
    decided: dict[str, Any] = {"scale": how, "columns": columns}
    if dropped:
        decided["dropped"] = f"{dropped} evaluation(s) at iteration 0, before training"
    return records, decided


def build_config(model: str, seed: int, src: Path, fmt: str, options: dict[str, Any]) -> dict:
    """config.json of an imported run: what it is, where from, and what it lacks."""
    records, recipe = options["records"], dict(options.get("recipe") or {})
    unknown = [k for k in RECIPE_KEYS if k not in recipe]
    if "iterations" in recipe or "epochs" in recipe:  # a schedule is one or the other
        unknown = [k for k in unknown if k not in ("iterations", "epochs")]
    finished = bool(options.get("finished"))
    total = options.get("total_iterations") or (records[-1]["iteration"] if finished else None)
    lacks = [k for k in NEEDED if any(k not in r for r in records)] + ["checkpoint"]
    lacks += [] if total else ["schedule length"]
    lacks += [f"recipe ({', '.join(unknown)})"] if unknown else []
    lacks += [] if "data_official" in recipe else ["data (official 50k/10k or a subset)"]
    imported = {"source": str(src), "format": fmt, "lacks": lacks, "finished": finished}
    imported |= {"unknown": unknown, **options["decided"]}
    config = {"model": model, "seed": seed, **recipe, "total_iterations": total}
    config |= {"imported": imported}
    problems = run_config_problems(config)
    if problems:
        raise ReproError(f"{problems[0]} (from --set)")
    return config


POSITIVE_INTS = ("epochs", "iterations", "batch_size")


def _recipe_problem(key: str, value: Any) -> str | None:
    """Why a ``--set`` value cannot be that recipe field, or None."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if key in POSITIVE_INTS and value is not None and not (whole and value >= 1):
        return "a whole number >= 1 (or null)"
    if key in ("lr", "momentum", "weight_decay") and value is not None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value >= 0):
            return "a finite number >= 0"
    if key == "milestones" and value is not None:
        ok = isinstance(value, list) and all(isinstance(m, int) and m >= 1 for m in value)
        if not ok:
            return "a list of whole numbers >= 1"
    if key == "data_official" and not isinstance(value, bool):
        return "true or false"
    return None


def parse_recipe(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` recipe fields and ``data_official`` (VALUE as JSON, else a string)."""
    allowed = set(RECIPE_FIELDS) | {"recipe", "data_official"}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise ReproError(f"--set {item!r}: use KEY=VALUE, KEY a recipe field")
        try:
            out[key] = json.loads(value)
        except (ValueError, RecursionError):
            out[key] = value
        problem = _recipe_problem(key, out[key])
        if problem:
            raise ReproError(f"--set {item!r}: {key} must be {problem}")
    return out


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReproError(f"--out {out} is not an empty folder; import into a new folder")
    check_writable(out.parent)  # one line for a read-only or impossible --out, before any work


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished import into place (``out`` absent or empty)."""
    if out.is_dir():
        out.rmdir()
    os.replace(tmp, out)


def _run_files(src: Path, model: str, seed: int, opts: dict[str, Any]) -> tuple[dict, list]:
    """(config, records) of one imported run, every check done, nothing written."""
    path, fmt = find_log(src, opts.get("format"))
    rows = fmt.read(path)
    scale = fmt.auto_scale if fmt.auto_scale and opts["scale"] == "auto" else opts["scale"]
    records, decided = convert(rows, opts["mapping"], scale, opts.get("per_epoch"), str(path))
    if scale != opts["scale"]:
        decided["scale"] = f"{scale} ({fmt.scale_note})"
    opts = {**opts, "records": records, "decided": decided}
    config = build_config(model, seed, path, fmt.name, opts)
    return config, records


def _write_run(folder: Path, config: dict, records: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_run_config(folder, parse_run_config(config))
    write_jsonl(folder / METRICS, records)


def import_run(src: Path, out: Path, model: str, seed: int, opts: dict[str, Any]) -> dict:
    """One run folder from one log; returns its config."""
    _prepare_out(out)
    config, records = _run_files(src, model, seed, opts)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        _write_run(tmp, config, records)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return config


def matrix_sources(root: Path) -> dict[str, dict[int, Path]]:
    """``{model: {seed: folder}}`` of ``ROOT/<model>/seed<k>/``."""
    found: dict[str, dict[int, Path]] = {}
    for folder in sorted(p for p in Path(root).glob("*/seed*") if p.is_dir()):
        seed = seed_of(folder)
        if seed is not None:
            found.setdefault(folder.parent.name, {})[seed] = folder
    if not found:
        raise ReproError(f"{root} holds no <model>/seed<k>/ folders to import")
    return found


def import_matrix(src: Path, out: Path, experiment: str, preset: str, opts: dict) -> dict:
    """A matrix from ``SRC/<model>/seed<k>/`` folders, with its summary.json."""
    models = get_experiment(experiment)
    description = get_preset(preset).description
    _prepare_out(out)
    sources = matrix_sources(src)
    extra = [m for m in sources if m not in models]
    if extra:
        raise ReproError(f"{src}: {', '.join(extra)} not in experiment {experiment!r}")
    files = {
        (m, s): _run_files(folder, m, s, opts)
        for m, seeds in sources.items()
        for s, folder in seeds.items()
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        for (m, s), (config, records) in files.items():
            _write_run(seed_dir(tmp, m, s), config, records)
        seeds = sorted({s for _, s in files})
        summary = build_summary(experiment, preset, seeds, load_runs(tmp, sources, seeds))
        summary |= {"preset_description": description, "imported": str(src), "status": "imported"}
        write_summary(tmp, summary)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


__all__ = ["CONFIG", "import_matrix", "import_run", "parse_mapping", "parse_recipe"]
