"""A run's ``config.json`` as one typed record (:class:`RunConfig`), written and read by one pair
of functions (:func:`write_run_config`, :func:`read_run_config`), and one metrics.jsonl record
(:class:`EvalRecord`).

config.json is the contract between the trainer that writes it and every reader (resume, the
claims, the report, Fig. 7, `repro evaluate`): the resolved recipe (He et al. 2016, Sec. 4.2), the
schedule in iterations, the runtime, the input normalisation (Sec. 3.4/4.2), the data and the
environment. Every key the trainer writes is a field here, in the order it writes them.

Files written before a key existed still load: an absent key takes the field's documented default
(:data:`LEGACY_VALUES` for the recipe fields added later - what such a run did - else None) and
is remembered in :attr:`RunConfig.absent`, so that writing the record back leaves it absent; a key
this module does not know is kept, in order, in :attr:`RunConfig.extra`. A value of the wrong type
is one problem naming the key (:func:`run_config_problems`), never a crash downstream.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.fileio import INTEGER, NUMBER, read_json, write_json, wrong_types

CONFIG = "config.json"

# What a run did whose config.json predates the field (missing field => the old behaviour, never
# the recipe's new default): BN over the whole batch, CIFAR-10 per-channel mean/std, decay on
# every parameter, a warm-up ended by the error threshold alone, bf16 for `--amp auto` on CUDA.
LEGACY_VALUES: dict[str, str | None] = {
    "bn_batch": None,
    "normalize": "per-channel",
    "weight_decay_policy": "all",
    "warmup_bound": "none",
    "amp_auto": "bf16",
}

Kinds = tuple[object, ...]  # what a present value may be: a type, INTEGER, NUMBER or None (null)


def _key(kinds: Kinds, default: object = None, items: object = None) -> Any:
    """A config.json key: the kinds its value may be (``items``: the kind of a list's entries)
    and the default an absent key takes."""
    meta = {"kinds": kinds, "items": items}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def _legacy(kinds: Kinds, name: str) -> Any:
    return _key(kinds, LEGACY_VALUES[name])


@dataclass(frozen=True)
class RunConfig:
    """Every key of config.json, typed; see the module docstring for absent and unknown keys."""

    model: str = _key((str,), "")
    model_kwargs: dict[str, object] = _key((dict,), {})
    shortcut: str | None = _key((str, None))  # Sec. 3.3 option A/B/C; None for a plain net
    recipe: str | None = _key((str,))
    # the recipe's fields (repro.recipes.Recipe), in its order
    name: str | None = _key((str, None))
    batch_size: int | None = _key((INTEGER, None))
    lr: float | None = _key((NUMBER, None))
    momentum: float | None = _key((NUMBER, None))
    weight_decay: float | None = _key((NUMBER, None))
    nesterov: bool | None = _key((bool, None))
    epochs: int | None = _key((INTEGER, None))
    iterations: int | None = _key((INTEGER, None))
    milestones: list[int] | None = _key((list,), None, INTEGER)
    milestone_unit: str | None = _key((str, None))
    step_size: int | None = _key((INTEGER, None))
    gamma: float | None = _key((NUMBER, None))
    warmup: str | None = _key((str, None))
    warmup_lr: float | None = _key((NUMBER, None))
    warmup_until_error: float | None = _key((NUMBER, None))
    warmup_min_depth: int | None = _key((INTEGER, None))
    warmup_check_every: int | None = _key((INTEGER, None))
    warmup_bound: str | None = _legacy((str, None), "warmup_bound")
    split: str | None = _key((str, None))
    val_fraction: float | None = _key((NUMBER, None))
    early_stopping_patience: int | None = _key((INTEGER, None))
    weight_decay_policy: str | None = _legacy((str, None), "weight_decay_policy")
    bn_batch: int | None = _legacy((INTEGER, None), "bn_batch")
    normalize: str | None = _legacy((str, None), "normalize")
    amp_auto: str | None = _legacy((str, None), "amp_auto")
    source: str | None = _key((str, None))
    # the schedule as resolved, in iterations
    warmup_active: bool | None = _key((bool, None))
    warmup_limit_iteration: int | None = _key((INTEGER, None))
    iterations_per_epoch: int | None = _key((INTEGER, None))
    milestone_iterations: list[int] | None = _key((list, None), None, INTEGER)
    total_iterations: int | None = _key((INTEGER, None))
    max_steps: int | None = _key((INTEGER, None))
    eval_every: int | None = _key((INTEGER, None))
    drop_last: bool | None = _key((bool, None))
    checkpoint_every: int | None = _key((INTEGER, None))
    best_by: str | None = _key((str, None))
    best_by_note: str | None = _key((str, None))
    # the runtime
    seed: int | None = _key((INTEGER,))
    split_seed: int | None = _key((INTEGER, None))
    deterministic: bool | None = _key((bool, None))
    device: str | None = _key((str, None))
    device_requested: str | None = _key((str, None))
    amp: str | None = _key((str, None))
    tf32_matmul: bool | None = _key((bool, None))
    tf32_cudnn: bool | None = _key((bool, None))
    amp_requested: str | None = _key((str, None))  # --amp as asked ("auto", "bf16", ...)
    channels_last: bool | None = _key((bool, None))  # as resolved (the request: TrainConfig)
    compile: bool | None = _key((bool, None))  # as resolved
    compile_mode: str | None = _key((str, None))
    threads: int | None = _key((INTEGER, None))
    world_size: int | None = _key((INTEGER, None))
    per_rank_batch_size: int | None = _key((INTEGER, None))
    sync_bn: bool | None = _key((bool, None))
    eval_batch_size: int | None = _key((INTEGER, None))
    log_every: int | None = _key((INTEGER, None))
    cuda_visible_devices: str | None = _key((str, None))
    placement: str | None = _key((str, None))
    # the input normalisation: per-channel mean/std, or the mean image's summary (Sec. 3.4)
    mean: list[float] | None = _key((list, None), None, NUMBER)
    std: list[float] | None = _key((list, None), None, NUMBER)
    mean_image: dict[str, object] | None = _key((dict, None))
    # the data and the machine
    data_root: str | None = _key((str, None))
    data_official: bool | None = _key((bool, None))
    data_counts: dict[str, int] | None = _key((dict, None))
    environment: Mapping[str, object] | None = _key((dict, None))
    # `repro import-run`: what the import is, where from, what it lacks (absent for our runs)
    imported: dict[str, object] | None = _key((dict, None))
    # keys config.json had that this record does not know (kept, in order), the keys it lacked,
    # and the order of its keys (empty for a record the trainer built: the fields' order)
    extra: dict[str, object] = field(default_factory=dict, compare=False)
    absent: frozenset[str] = field(default=frozenset(), compare=False)
    order: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, object]:
        """config.json's object: every key the record holds (a key the file lacked stays out
        while it keeps its default), then the unknown ones; in the file's order when it was
        read from one, so that a file read and written back is unchanged."""
        out = {k: getattr(self, k) for k in RUN_CONFIG_KEYS if self.recorded(k)}
        out |= self.extra
        rank = {k: i for i, k in enumerate(self.order)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def recorded(self, key: str) -> bool:
        """Whether config.json holds ``key`` (absent from the file and still at its default:
        not)."""
        if key not in RUN_CONFIG_KEYS:
            return key in self.extra
        return key not in self.absent or getattr(self, key) != _DEFAULTS[key]

    def expected_end(self) -> int | None:
        """The iteration the schedule ends at: ``total_iterations``, cut by ``max_steps``."""
        total, cut = self.total_iterations, self.max_steps
        if total is None:
            return cut
        return min(total, cut) if cut else total


# The keys only `repro import-run` writes: absent from every run the trainer records.
TRAINER_NEVER_WRITES = frozenset({"imported"})
RUN_CONFIG_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(RunConfig) if "kinds" in f.metadata
)
_KINDS: dict[str, Kinds] = {
    f.name: f.metadata["kinds"] for f in dataclasses.fields(RunConfig) if "kinds" in f.metadata
}
_ITEMS: dict[str, object] = {
    f.name: f.metadata["items"] for f in dataclasses.fields(RunConfig) if f.metadata.get("items")
}


def _default(f: dataclasses.Field[object]) -> object:
    """The value an absent key takes (a field's default, or a fresh one from its factory)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if callable(f.default_factory) else None


_DEFAULTS = {f.name: _default(f) for f in dataclasses.fields(RunConfig) if "kinds" in f.metadata}
_COUNTS = {k: (INTEGER,) for k in ("train", "val", "test")}


def run_config_problems(obj: Mapping[str, object], where: str = CONFIG) -> list[str]:
    """Every key of a config.json object whose value has the wrong type (list entries and the
    data counts included): ``where: 'key' is <type>, expected <kinds>``."""
    values = dict(obj)
    problems = wrong_types(values, _KINDS, where)
    for key, kind in _ITEMS.items():
        value = values.get(key)
        if isinstance(value, list):
            spec = {str(i): (kind,) for i in range(len(value))}
            wrong = wrong_types({str(i): v for i, v in enumerate(value)}, spec, f"{where} {key}")
            problems += wrong[:1]
    counts = values.get("data_counts")
    if isinstance(counts, dict):
        problems += wrong_types(counts, _COUNTS, f"{where} data_counts")
    return problems


def parse_run_config(obj: Mapping[str, object], where: str = CONFIG) -> RunConfig:
    """The record of a config.json object (ReproError naming the first wrong key): absent keys
    take their defaults and are remembered, unknown keys are kept in ``extra``. (An object
    without ``model`` is a run config only to readers that need no more than they find.)"""
    problems = run_config_problems(obj, where)
    if problems:
        raise ReproError(problems[0])
    known = {k: v for k, v in obj.items() if k in _KINDS}
    extra = {k: v for k, v in obj.items() if k not in _KINDS}
    absent = frozenset(k for k in RUN_CONFIG_KEYS if k not in obj)
    order = tuple(obj)
    return RunConfig(**known, extra=extra, absent=absent, order=order)  # type: ignore[arg-type]


def write_run_config(run: str | os.PathLike, config: RunConfig) -> None:
    """``run/config.json``, atomically."""
    write_json(Path(run) / CONFIG, config.to_dict())


def read_run_config(run: str | os.PathLike) -> RunConfig:
    """``run/config.json`` as a :class:`RunConfig`; one ReproError (saying to use a new folder)
    when it is not a readable run config of this project."""
    path = Path(run) / CONFIG
    try:
        obj = read_json(path)
        if "model" not in obj:
            raise ReproError(f"{path} is not a resnet-repro run config")
        return parse_run_config(obj, str(path))
    except ReproError as exc:
        raise ReproError(f"{exc}; use a new --out folder") from None


# ---------------------------------------------------------------- one metrics.jsonl record


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation, as a metrics.jsonl line: the training means since the previous one, the
    validation (None without a split) and test loss and error (%), and throughput."""

    epoch: float
    iteration: int
    lr: float
    train_loss: float
    train_error: float
    val_loss: float | None
    val_error: float | None
    test_loss: float
    test_error: float
    seconds: float
    images_per_s: float

    def to_dict(self) -> dict[str, float | int | None]:
        return dataclasses.asdict(self)

    def error(self, key: str) -> float:
        """``val_error`` or ``test_error`` (what best.pt is chosen by)."""
        value = self.val_error if key == "val_error" else self.test_error
        if value is None:
            raise ValueError(f"no {key} in this record")
        return value


METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EvalRecord))
TIMING_KEYS: tuple[str, ...] = ("seconds", "images_per_s")
