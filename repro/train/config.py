"""What one training run is asked to do (:class:`TrainConfig`) and how a run folder's config.json
turns back into it for a resume.

Field metadata drives the rest: ``cli`` fields are `repro train` flags of the same name, and
``resumed`` fields are restored from config.json by ``--resume`` (the others are re-decided).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repro.errors import ReproError
from repro.recipes import BN_BATCH_AND_SYNC_BN, BN_BATCH_OFF, RECIPE_FIELDS, Recipe
from repro.run_config import CONFIG, LEGACY_VALUES, RunConfig
from repro.train.resume import recorded_config
from repro.train.switches import resolve_compile, resolve_switch, switch_word


def _option(default: Any, resumed: bool = True) -> Any:
    """A runtime field: a `repro train` flag, restored on resume when ``resumed``."""
    return field(default=default, metadata={"cli": True, "resumed": resumed})


@dataclass
class TrainConfig:
    """One training run: model, recipe (+ field overrides), output folder and runtime knobs."""

    model: str
    out: str | os.PathLike
    recipe: str = "paper"
    model_kwargs: dict[str, object] = field(default_factory=dict)
    overrides: dict[str, object] = field(default_factory=dict)  # recipe field -> value
    seed: int = _option(0)
    split_seed: int = _option(0)  # which images form the validation split (fixed across seeds)
    data_root: str | os.PathLike | None = _option(None)
    device: str = _option("auto", resumed=False)  # auto | cpu | cuda | cuda:N; see config_from_run
    amp: str = _option("auto")  # auto | bf16 | fp16 | off
    # what was asked: auto | on | off (the resolution, for a device, is a FastPath)
    channels_last: str = _option("auto")  # auto = on (CPU and CUDA)
    compile: str = _option("auto")  # auto = on CUDA only
    compile_mode: str = _option("default")  # a torch.compile mode, see COMPILE_MODES
    deterministic: bool = _option(False)
    threads: int | None = _option(None)
    eval_every: int | None = _option(None)  # iterations; default one epoch
    checkpoint_every: int | None = _option(None)  # iterations; default eval_every
    max_steps: int | None = _option(None)  # restored on resume: a finished run stays finished
    eval_batch_size: int = _option(1000)
    log_every: int | None = _option(None)  # None: 50 on the CPU, once per evaluation on CUDA
    sync_bn: bool = _option(False)
    tensorboard: bool = _option(False, resumed=False)
    quiet: bool = _option(False, resumed=False)
    resume: bool = False
    # the --amp word the run was asked for, as config.json records it ("amp_requested"): a
    # resumed run keeps its first one (None for a run written before it was recorded)
    amp_requested: str | None = None


def config_fields(flag: str) -> tuple[str, ...]:
    """The TrainConfig fields whose metadata has ``flag`` (``cli`` or ``resumed``)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get(flag))


def config_from_run(out: str | os.PathLike) -> TrainConfig:
    """The TrainConfig that continues the run in ``out`` (runtime settings as recorded there)."""
    out = Path(out)
    recorded, _ = recorded_config(out)  # config.json, or the copy in a checkpoint if it was lost
    if recorded is None:
        raise ReproError(f"nothing to resume: {out / CONFIG} does not exist")
    if recorded.recipe is None:
        raise ReproError(f"{out / CONFIG} names no recipe: it cannot be resumed; use a new --out")
    kept = {k: getattr(recorded, k) for k in config_fields("resumed")}
    # config.json records the fast path as resolved (true/false): asked again as on/off
    for switch in ("channels_last", "compile"):
        if kept[switch] is not None:
            kept[switch] = switch_word(kept[switch])
    return TrainConfig(
        model=recorded.model,
        out=out,
        recipe=recorded.recipe,
        model_kwargs=dict(recorded.model_kwargs),
        overrides=recorded_overrides(recorded),
        device=recorded.device_requested or "auto",
        resume=True,
        amp_requested=recorded.amp_requested,
        **{k: v for k, v in kept.items() if v is not None},
    )


def recorded_overrides(recorded: RunConfig) -> dict[str, object]:
    """The recipe fields a run recorded, as overrides that rebuild exactly its recipe: a field
    the run predates takes its legacy value (the behaviour the run had, not the recipe's new
    default: RunConfig's default), and a recorded ``bn_batch`` of None stays None (``off``)."""
    fields = [f for f in RECIPE_FIELDS if f not in ("name", "source")]
    kept = [f for f in fields if recorded.recorded(f) or f in LEGACY_VALUES]
    overrides: dict[str, object] = {f: getattr(recorded, f) for f in kept}
    if "bn_batch" in overrides and overrides["bn_batch"] is None:
        overrides["bn_batch"] = BN_BATCH_OFF
    return overrides


def resume_command(config: TrainConfig) -> str:
    """The shell command that continues this run where it stopped."""
    cmd = [sys.executable, "-m", "repro", "train", "--out", str(config.out), "--resume"]
    if config.max_steps is not None:
        cmd += ["--max-steps", str(config.max_steps)]
    return shlex.join(cmd)


@dataclass(frozen=True)
class FastPath:
    """The fast path as resolved once for a device, from what :class:`TrainConfig` asked."""

    channels_last: bool
    compile_mode: str | None  # the torch.compile mode; None: eager

    @property
    def compile(self) -> bool:
        return self.compile_mode is not None


def fast_path(config: TrainConfig, device: torch.device) -> FastPath:
    """channels_last and the compile mode (or None) for this device: the fast path is the default
    on CUDA.

    channels_last is on by default everywhere (measured 1.16-1.28x on the CPU's training step; the
    NHWC layout cuDNN's tensor-core kernels want on CUDA); torch.compile only on CUDA, since it
    costs tens of seconds per process on a small CPU.
    """
    channels_last = resolve_switch("channels-last", config.channels_last, auto=True)
    return FastPath(
        channels_last, resolve_compile(config.compile, config.compile_mode, device.type)
    )


def log_interval(log_every: int | None, eval_every: int, device: torch.device) -> int:
    """Iterations between progress updates, each a host sync: ``log_every`` if given, else 50 on
    the CPU (where a sync costs nothing) and once per evaluation on CUDA (no sync in the epoch)."""
    if log_every is not None:
        return log_every
    return eval_every if device.type == "cuda" else 50


def check_bn_options(config: TrainConfig, recipe: Recipe) -> None:
    """One ReproError naming the flag, before anything is written: ``--sync-bn`` with
    ``--bn-batch`` (they contradict), or a ``--bn-batch`` given for a new run that is larger than
    the batch (it would be plain BN over the whole batch; a recipe's own default, e.g. the
    paper's 64 under ``--batch-size 16``, is plain BN there by definition and is not refused)."""
    if recipe.bn_batch is not None and config.sync_bn:
        raise ReproError(BN_BATCH_AND_SYNC_BN)
    asked = config.overrides.get("bn_batch")
    if config.resume or asked in (None, BN_BATCH_OFF) or recipe.bn_batch is None:
        return
    if recipe.bn_batch > recipe.batch_size:
        raise ReproError(
            f"--bn-batch {recipe.bn_batch} is larger than the batch size {recipe.batch_size}: "
            f"BN would see the whole batch; use at most {recipe.batch_size} (or --bn-batch off)"
        )


MAX_SEED = 2**63 - 1


def check_counts(config: TrainConfig) -> None:
    """One ReproError naming the flag for a count below 1."""
    for name in ("eval_every", "checkpoint_every", "max_steps", "threads"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ReproError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (config.log_every is not None and config.log_every < 1) or config.eval_batch_size < 1:
        raise ReproError("--log-every and --eval-batch-size must be >= 1")
    for name in ("seed", "split_seed"):  # every generator takes 0 .. 2**63-1 (numpy: mod 2**32)
        value = getattr(config, name)
        if not 0 <= value <= MAX_SEED:
            shown = str(value) if len(str(value)) <= 24 else f"{str(value)[:20]}..."
            flag = name.replace("_", "-")
            raise ReproError(f"--{flag} must be a whole number from 0 to 2**63-1, got {shown}")
