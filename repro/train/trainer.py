"""The training loop: SGD with the recipe's step schedule (He et al. 2016, Sec. 4.2), evaluations,
checkpoints for exact resume, and the run directory (config.json, metrics.jsonl, *.pt).

Host syncs: none per step. The loss and error sums stay in device tensors and are read only at
"sync points": every ``log_every`` iterations (progress display and the non-finite check; by
default 50 on the CPU, evaluations only on CUDA), every warm-up check (``warmup_check_every``, 50
by default, nets of 110+ layers), every evaluation and checkpoint. A
non-finite loss is therefore caught at the next sync point, before any checkpoint is written, so
last.pt is always the last good state. SIGINT/SIGTERM are honoured after the current step
(single process) or at the next sync point (DDP, where all ranks must agree).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    load_cifar10,
    resolve_data_root,
    train_val_indices,
)
from repro.errors import ReproError
from repro.models import build_model
from repro.train import ddp
from repro.train.checkpoint import save_checkpoint
from repro.train.environment import environment
from repro.train.evaluate import evaluate
from repro.train.metrics import Meter, append_metrics, truncate_metrics
from repro.train.progress import Progress
from repro.train.recipes import (
    RECIPE_FIELDS,
    Recipe,
    Schedule,
    Warmup,
    build_schedule,
    get_recipe,
    lr_at,
)
from repro.train.rng import rng_state, seed_everything, set_rng_state
from repro.train.rundir import (
    BEST,
    CONFIG,
    FINAL,
    LAST,
    METRICS,
    check_writable,
    inspect_run_dir,
    read_config,
)
from repro.train.switches import CUDA_GRAPH_MODES, check_compile_mode, resolve_switch


@dataclass
class TrainConfig:
    """One training run: model, recipe (+ field overrides), output folder and runtime knobs."""

    model: str
    out: str | os.PathLike
    recipe: str = "paper"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe field -> value
    seed: int = 0
    split_seed: int = 0  # which images form the validation split (fixed across seeds)
    data_root: str | os.PathLike | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto | bf16 | fp16 | off
    channels_last: bool | str = "auto"  # auto | on | off; auto = on (faster on CPU and CUDA)
    compile: bool | str = "auto"  # auto | on | off; auto = on CUDA only (slow to compile on CPU)
    compile_mode: str = "default"  # a torch.compile mode, see COMPILE_MODES
    deterministic: bool = False
    threads: int | None = None
    eval_every: int | None = None  # iterations; default one epoch
    checkpoint_every: int | None = None  # iterations; default eval_every
    max_steps: int | None = None
    eval_batch_size: int = 1000
    log_every: int | None = None  # None: 50 on the CPU, once per evaluation on CUDA
    sync_bn: bool = False
    tensorboard: bool = False
    quiet: bool = False
    resume: bool = False


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM: last.pt was written; ``exit_code`` is 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def config_from_run(out: str | os.PathLike) -> TrainConfig:
    """The TrainConfig that continues the run in ``out`` (runtime settings as recorded there)."""
    out = Path(out)
    if not (out / CONFIG).is_file():
        raise ReproError(f"nothing to resume: {out / CONFIG} does not exist")
    cfg = read_config(out)
    overrides = {f: cfg[f] for f in RECIPE_FIELDS if f not in ("name", "source") and f in cfg}
    keep = ("seed", "split_seed", "data_root", "amp", "channels_last", "compile", "compile_mode",
            "deterministic", "threads", "eval_every", "checkpoint_every", "eval_batch_size",
            "log_every", "sync_bn")  # fmt: skip
    kw = {k: cfg[k] for k in keep if cfg.get(k) is not None}
    return TrainConfig(
        model=cfg["model"],
        out=out,
        recipe=cfg["recipe"],
        model_kwargs=dict(cfg.get("model_kwargs") or {}),
        overrides=overrides,
        device=cfg.get("device_requested", "auto"),
        resume=True,
        **kw,
    )


def resume_command(config: TrainConfig) -> str:
    """The shell command that continues this run where it stopped."""
    cmd = [sys.executable, "-m", "repro", "train", "--out", str(config.out), "--resume"]
    if config.max_steps is not None:
        cmd += ["--max-steps", str(config.max_steps)]
    return shlex.join(cmd)


# ---------------------------------------------------------------- devices, precision, models


def resolve_device(name: str, info: ddp.DistInfo) -> torch.device:
    """``auto`` -> CUDA when present (else CPU, with a warning); ``cuda`` without CUDA is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        else:
            if info.is_main:
                warnings.warn("no CUDA device found: training on the CPU", stacklevel=2)
            name = "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ReproError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ReproError("--device cuda asked for, but no CUDA device is available")
        if info.enabled:
            dev = torch.device("cuda", info.local_rank)
        elif dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ReproError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return dev


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto`` = bf16 on CUDA, off on CPU; fp16 needs CUDA (it uses a GradScaler)."""
    amp = amp.lower()
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ReproError("--amp fp16 needs CUDA; use --amp bf16 or off on the CPU")
        return torch.float16
    raise ReproError(f"unknown --amp {amp!r}; use auto, bf16, fp16 or off")


def fast_path(config: TrainConfig, device: torch.device) -> tuple[bool, str | None]:
    """(channels_last, compile mode or None) for this device: the fast path is the default on CUDA.

    channels_last is on by default everywhere (measured 1.16-1.28x on the CPU's training step; the
    NHWC layout cuDNN's tensor-core kernels want on CUDA); torch.compile only on CUDA, since it
    costs tens of seconds per process on a small CPU.
    """
    channels_last = resolve_switch("channels-last", config.channels_last, auto=True)
    compiled = resolve_switch("compile", config.compile, auto=device.type == "cuda")
    return channels_last, check_compile_mode(config.compile_mode) if compiled else None


def log_interval(log_every: int | None, eval_every: int, device: torch.device) -> int:
    """Iterations between progress updates, each a host sync: ``log_every`` if given, else 50 on
    the CPU (where a sync costs nothing) and once per evaluation on CUDA (no sync in the epoch)."""
    if log_every is not None:
        return log_every
    return eval_every if device.type == "cuda" else 50


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """torch.compile with ``mode`` ("default" is inductor's default)."""
    return torch.compile(model, mode=None if mode == "default" else mode)


def amp_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def make_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """build_model with a ReproError (not a ValueError/TypeError) for a bad name or argument."""
    try:
        return build_model(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ReproError(str(exc)) from None


def model_depth(model: nn.Module, name: str) -> int | None:
    """The number of weighted layers (for the >= 110 warm-up rule)."""
    depth = getattr(model, "depth", None)
    if isinstance(depth, int):
        return depth
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum and weight decay on every parameter; fused on CUDA, foreach elsewhere."""
    kw: dict[str, Any] = {}
    if device.type == "cuda":
        kw["fused"] = True
    else:
        kw["foreach"] = True
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
        **kw,
    )


StepFn = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler | None,
    compile_mode: str | None = None,
) -> StepFn:
    """One SGD step: ``step(x, y, scale)`` -> (summed loss, misclassified count), both on device.

    The loss minimised is ``scale * sum(CE)``; ``scale = world_size / global batch`` makes DDP's
    gradient averaging equal the mean over the global batch. ``compile_mode``: run the model
    through torch.compile in that mode (None: eager); in a CUDA-graph mode each step starts a new
    graph generation.
    """
    device_type = next(model.parameters()).device.type
    cudagraphs = compile_mode in CUDA_GRAPH_MODES
    if compile_mode is not None:
        model = compile_model(model, compile_mode)

    def step(x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)):
            logits = model(x)
        loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss_sum * scale).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            (loss_sum * scale).backward()
            optimizer.step()
        return loss_sum.detach(), (logits.detach().argmax(1) != y).sum()

    return step


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------------ data


@dataclass
class Splits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    official: bool
    root: Path


def load_splits(data_root: str | os.PathLike | None, recipe: Recipe, split_seed: int) -> Splits:
    """The recipe's training split, its validation split (None if val_fraction is 0), and test."""
    data = load_cifar10(data_root)
    if recipe.val_fraction > 0:
        tr, va = train_val_indices(data.train_labels, recipe.val_fraction, split_seed)
        train = (data.train_images[tr], data.train_labels[tr])
        val: tuple[torch.Tensor, torch.Tensor] | None = (
            data.train_images[va],
            data.train_labels[va],
        )
    else:
        train, val = (data.train_images, data.train_labels), None
    return Splits(train, val, (data.test_images, data.test_labels), data.official, data.root)


def infinite_batches(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


# ------------------------------------------------------------------------------ signals


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop looks at it between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\nreceived {signal.Signals(signum).name}: stopping after this step...",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------ training


def _config_dict(
    config: TrainConfig,
    recipe: Recipe,
    schedule: Schedule,
    splits: Splits,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    eval_every: int,
    checkpoint_every: int,
    drop_last: bool,
    info: ddp.DistInfo,
) -> dict[str, Any]:
    best_by = "val_error" if splits.val is not None else "test_error"
    return {
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "recipe": recipe.name,
        **recipe.to_dict(),
        "warmup_active": schedule.warmup_lr is not None,
        "iterations_per_epoch": schedule.iterations_per_epoch,
        "milestone_iterations": list(schedule.milestones),
        "total_iterations": schedule.total_iterations,
        "max_steps": config.max_steps,
        "eval_every": eval_every,
        "drop_last": drop_last,
        "checkpoint_every": checkpoint_every,
        "best_by": best_by,
        "best_by_note": None
        if best_by == "val_error"
        else "no validation split: best.pt is chosen by TEST error (optimistically biased)",
        "seed": config.seed,
        "split_seed": config.split_seed,
        "deterministic": config.deterministic,
        "device": str(device),
        "device_requested": config.device,
        "amp": amp_name(amp_dtype),
        "channels_last": config.channels_last,
        "compile": config.compile,
        "compile_mode": config.compile_mode if config.compile else None,
        "threads": config.threads,
        "world_size": info.world_size,
        "per_rank_batch_size": recipe.batch_size // info.world_size,
        "sync_bn": config.sync_bn,
        "eval_batch_size": config.eval_batch_size,
        "log_every": config.log_every,
        "mean": list(CIFAR10_MEAN),
        "std": list(CIFAR10_STD),
        "data_root": str(
            (
                splits.root.parent if splits.root.name == "cifar-10-batches-py" else splits.root
            ).resolve()
        ),  # fmt: skip
        "data_official": splits.official,
        "data_counts": {
            "train": int(splits.train[1].numel()),
            "val": 0 if splits.val is None else int(splits.val[1].numel()),
            "test": int(splits.test[1].numel()),
        },
        "environment": environment(device),
    }


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _setup_runtime(config: TrainConfig, device: torch.device) -> None:
    if config.threads is not None:
        if config.threads < 1:
            raise ReproError(f"--threads must be >= 1, got {config.threads}")
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def train(config: TrainConfig) -> Path:
    """Train as ``config`` says and return the run folder (resuming what is already there)."""
    info = ddp.from_env()
    device = resolve_device(config.device, info)
    if info.enabled:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        ddp.init(info, device)
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.cudnn.benchmark)  # fmt: skip
    try:
        return _train(config, device, info)
    finally:  # leave the calling process as it was (threads, determinism)
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        ddp.shutdown()


def _train(config: TrainConfig, device: torch.device, info: ddp.DistInfo) -> Path:
    out = Path(config.out)
    recipe = get_recipe(config.recipe, **config.overrides)
    if recipe.batch_size % info.world_size:
        raise ReproError(
            f"batch size {recipe.batch_size} is not divisible by the {info.world_size} processes"
        )
    amp_dtype = resolve_amp(config.amp, device)
    channels_last, compile_mode = fast_path(config, device)
    config = dataclasses.replace(config, channels_last=channels_last, compile=bool(compile_mode))
    for name in ("eval_every", "checkpoint_every", "max_steps"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ReproError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (config.log_every is not None and config.log_every < 1) or config.eval_batch_size < 1:
        raise ReproError("--log-every and --eval-batch-size must be >= 1")
    _setup_runtime(config, device)

    seed_everything(config.seed)
    model = make_model(config.model, config.model_kwargs)
    splits = load_splits(resolve_data_root(config.data_root), recipe, config.split_seed)
    n_train = int(splits.train[1].numel())
    # A last batch of one image per process cannot train batch norm: drop it (warned, recorded).
    remainder = n_train % recipe.batch_size
    drop_last = remainder > 0 and remainder // info.world_size < 2
    if drop_last and info.is_main:
        warnings.warn(
            f"{n_train} training images in batches of {recipe.batch_size}: the last batch of "
            f"{remainder} is dropped each epoch (too small for batch norm)",
            stacklevel=2,
        )
    schedule = build_schedule(
        recipe, n_train - remainder * drop_last, model_depth(model, config.model)
    )
    eval_every = config.eval_every or schedule.iterations_per_epoch
    config = dataclasses.replace(
        config, log_every=log_interval(config.log_every, eval_every, device)
    )
    checkpoint_every = config.checkpoint_every or eval_every
    target = schedule.total_iterations
    if config.max_steps is not None:
        target = min(target, config.max_steps)
    cfg = _config_dict(
        config,
        recipe,
        schedule,
        splits,
        device,
        amp_dtype,
        eval_every,
        checkpoint_every,
        drop_last,
        info,
    )

    # ---- the run folder: every check before any training
    if info.is_main:
        check_writable(out)
    state = inspect_run_dir(out, cfg, target, config.resume)
    ddp.barrier(info)  # every rank has read the folder before rank 0 changes it
    if state.complete:
        if info.is_main and not config.quiet:
            print(f"{out}: run already complete ({FINAL} exists); nothing to do")
        return out

    # ---- model, optimiser, loaders
    if config.sync_bn and info.enabled:
        if device.type != "cuda":
            raise ReproError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel); drop it")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    plain = model
    optimizer = make_optimizer(plain, recipe, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    loader = DeviceLoader(
        *splits.train,
        recipe.batch_size,
        train=True,
        drop_last=drop_last,
        seed=config.seed,
        device=device,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        memory_format=memory_format,
    )
    warmup = Warmup(schedule)
    meter, window = Meter(device), Meter(device)
    iteration, elapsed_before = 0, 0.0
    best_value, best_iteration, bad_evals, stop_reason = math.inf, None, 0, None

    if state.checkpoint is not None:
        ck = state.checkpoint
        try:
            plain.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            loader.load_state_dict(ck["loader"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ReproError(
                f"{out / LAST} does not fit this run ({str(exc).splitlines()[0][:160]}); "
                "use a new --out folder"
            ) from None
        if scaler is not None and ck.get("scaler") is not None:
            scaler.load_state_dict(ck["scaler"])
        warmup.load_state_dict(ck["scheduler"]["warmup"])
        ms = ck["metrics_state"]
        meter.load_state_dict(ms["meter"])
        window.load_state_dict(ms["window"])
        iteration = int(ck["iteration"])
        elapsed_before = float(ms["seconds"])
        best_value, best_iteration = ms["best_value"], ms["best_iteration"]
        bad_evals, stop_reason = ms["bad_evals"], ms.get("stop_reason")
        set_rng_state(ck["rng"])

    if info.is_main:
        _write_json_atomic(out / CONFIG, cfg)
        if state.checkpoint is None:
            (out / METRICS).write_text("", encoding="utf-8")
            (out / BEST).unlink(missing_ok=True)
        else:
            truncate_metrics(out / METRICS, iteration)
        if state.extend_final:
            (out / FINAL).unlink()
    ddp.barrier(info)

    # ---- wrappers: DDP, compile
    train_model: nn.Module = plain
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            plain, device_ids=[device.index] if device.type == "cuda" else None
        )
    eager_step = make_step(train_model, optimizer, amp_dtype, scaler)
    step = eager_step
    try_compile = config.compile
    if try_compile:
        try:
            step = make_step(train_model, optimizer, amp_dtype, scaler, config.compile_mode)
        except Exception as exc:  # torch.compile itself unavailable: warn once, stay eager
            warnings.warn(f"torch.compile failed ({exc}); training eagerly", stacklevel=2)
            try_compile = False

    tb = _tensorboard(out, config) if info.is_main else None
    progress = Progress(
        enabled=info.is_main and not config.quiet,
        total=target,
        iterations_per_epoch=schedule.iterations_per_epoch,
    )
    ck_base = {"model_name": config.model, "model_kwargs": config.model_kwargs, "config": cfg}

    def training_state(it: int, seconds: float) -> dict[str, Any]:
        return {
            **ck_base,
            "model": plain.state_dict(),
            "iteration": it,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"warmup": warmup.state_dict(), "lr": lr_at(schedule, it, warmup.active)},
            "loader": loader.state_dict(),
            "scaler": None if scaler is None else scaler.state_dict(),
            "rng": rng_state(),
            "metrics_state": {
                "meter": meter.state_dict(),
                "window": window.state_dict(),
                "seconds": seconds,
                "best_value": best_value,
                "best_iteration": best_iteration,
                "bad_evals": bad_evals,
                "stop_reason": stop_reason,
            },
            "best_by": cfg["best_by"],
        }

    def diverged(it: int) -> ReproError:
        last = f"{out / LAST} (iteration {last_saved})" if last_saved is not None else "none yet"
        return ReproError(
            f"training diverged: non-finite loss by iteration {it} (lr {last_lr:g}); "
            f"last good checkpoint: {last}; "
            "lower --lr or check the data"
        )

    last_saved = iteration if state.checkpoint is not None else None
    last_lr = lr_at(schedule, iteration, warmup.active)
    batches = infinite_batches(loader)
    t0 = time.perf_counter()
    t_mark, images_mark = t0, 0
    images_seen = 0
    progress.start(iteration)
    with StopFlag() as flag:
        while iteration < target and stop_reason is None:
            x, y = next(batches)
            scale = info.world_size / y.shape[0]
            if info.enabled:
                x, y = x[info.rank :: info.world_size], y[info.rank :: info.world_size]
            last_lr = lr_at(schedule, iteration, warmup.active)
            set_lr(optimizer, last_lr)
            if try_compile:  # the first step compiles; a failure there falls back to eager
                step, loss_sum, errors = first_compiled_step(
                    step, eager_step, plain, optimizer, x, y, scale
                )
                try_compile = False
            else:
                loss_sum, errors = step(x, y, scale)
            meter.add(loss_sum, errors, y.shape[0])
            if warmup.active:
                window.add(loss_sum, errors, y.shape[0])
            iteration += 1
            images_seen += y.shape[0] * info.world_size
            progress.advance(iteration)

            do_eval = iteration % eval_every == 0 or iteration == target
            do_ckpt = iteration % checkpoint_every == 0 or iteration == target
            do_warm = warmup.due(iteration)
            do_log = iteration % config.log_every == 0
            stop_now = flag.signum is not None and not info.enabled
            if info.enabled and (do_log or do_eval or do_ckpt):
                stop_now = ddp.any_rank(flag.signum is not None, info, device)
            if not (do_eval or do_ckpt or do_warm or do_log or stop_now):
                continue

            # ---- sync point: read the running sums once
            loss_mean, err_mean, finite = Meter.read(ddp.all_reduce_sum(meter.packed(), info))
            if not finite:
                raise diverged(iteration)
            if do_warm:
                _, win_err, _ = Meter.read(ddp.all_reduce_sum(window.packed(), info))
                window.reset()
                if warmup.update(iteration, win_err) and info.is_main and not config.quiet:
                    progress.write(
                        f"warm-up over at iteration {iteration} (training error {win_err:.1f}% "
                        f"< {schedule.warmup_until_error:g}%): lr back to {schedule.base_lr:g}"
                    )
            now = time.perf_counter()
            progress.postfix(loss_mean, err_mean, images_seen / max(now - t0, 1e-9))
            if do_eval:
                ddp.broadcast_buffers(plain, info)
                record = _evaluate_record(
                    plain, splits, cfg, config, amp_dtype, device, iteration, schedule, last_lr,
                    loss_mean, err_mean,
                    seconds=elapsed_before + now - t0,
                    images_per_s=(images_seen - images_mark) / max(now - t_mark, 1e-9),
                )  # fmt: skip
                meter.reset()
                images_mark = images_seen
                value = record[cfg["best_by"]]
                improved = value < best_value
                if improved:
                    best_value, best_iteration, bad_evals = value, iteration, 0
                else:
                    bad_evals += 1
                if recipe.early_stopping_patience and bad_evals >= recipe.early_stopping_patience:
                    stop_reason = "early_stopping"
                    do_ckpt = True
                if info.is_main:
                    append_metrics(out / METRICS, record)
                    progress.write(_format_record(record, target))
                    if tb is not None:
                        for k, v in record.items():
                            if isinstance(v, (int, float)) and k not in ("iteration", "epoch"):
                                tb.add_scalar(k, v, iteration)
                    if improved:
                        save_checkpoint(
                            {**ck_base, "model": plain.state_dict(), "iteration": iteration,
                             "best_by": cfg["best_by"], "best_value": value, "metrics": record},
                            out / BEST,
                        )  # fmt: skip
                t_mark = time.perf_counter()
            if do_ckpt or stop_now:
                seconds = elapsed_before + time.perf_counter() - t0
                if info.is_main:
                    save_checkpoint(training_state(iteration, seconds), out / LAST)
                last_saved = iteration
            if stop_now:
                progress.close()
                signum = flag.signum or signal.SIGTERM
                code = 130 if signum == signal.SIGINT else 143
                raise TrainingInterrupted(
                    f"stopped by {signal.Signals(signum).name} at iteration {iteration}; "
                    f"{LAST} written. Resume with:\n  {resume_command(config)}",
                    code,
                )
    progress.close()

    if stop_reason is None:
        stop_reason = "schedule" if iteration >= schedule.total_iterations else "max_steps"
    ddp.broadcast_buffers(plain, info)
    rank_difference = ddp.max_rank_difference(plain, info)
    if info.is_main:
        seconds = elapsed_before + time.perf_counter() - t0
        final = training_state(iteration, seconds)
        final["stop_reason"] = stop_reason
        final["ddp"] = {"world_size": info.world_size, "max_rank_difference": rank_difference}
        save_checkpoint(final, out / FINAL)
        if tb is not None:
            tb.close()
        if not config.quiet:
            best = f"best {cfg['best_by']} {best_value:.2f}% at iteration {best_iteration}"
            print(f"{out}: done ({stop_reason}) after {iteration} iterations; {best}", flush=True)
    ddp.barrier(info)
    return out


def first_compiled_step(
    step: StepFn,
    eager: StepFn,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
) -> tuple[StepFn, torch.Tensor, torch.Tensor]:
    """Run the first step compiled; if compiling fails, warn once, restore and redo it eagerly."""
    saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    try:
        return (step, *step(x, y, scale))
    except Exception as exc:
        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                      "training eagerly", stacklevel=2)  # fmt: skip
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        return (eager, *eager(x, y, scale))


def _evaluate_record(
    model: nn.Module,
    splits: Splits,
    cfg: dict[str, Any],
    config: TrainConfig,
    amp_dtype: torch.dtype | None,
    device: torch.device,
    iteration: int,
    schedule: Schedule,
    lr: float,
    train_loss: float,
    train_error: float,
    seconds: float,
    images_per_s: float,
) -> dict[str, Any]:
    """One metrics.jsonl record: training means since the last one, val and test evaluation."""

    def run(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        r = evaluate(
            model, split[0], split[1], cfg["mean"], cfg["std"], batch_size=config.eval_batch_size,
            device=device, channels_last=config.channels_last, amp=amp_name(amp_dtype),
        )  # fmt: skip
        return r.loss, r.error_percent

    val_loss, val_error = run(splits.val) if splits.val is not None else (None, None)
    test_loss, test_error = run(splits.test)
    return {
        "epoch": iteration / schedule.iterations_per_epoch,
        "iteration": iteration,
        "lr": lr,
        "train_loss": train_loss,
        "train_error": train_error,
        "val_loss": val_loss,
        "val_error": val_error,
        "test_loss": test_loss,
        "test_error": test_error,
        "seconds": seconds,
        "images_per_s": images_per_s,
    }


def _format_record(r: dict[str, Any], target: int) -> str:
    val = "" if r["val_error"] is None else f" val {r['val_loss']:.3f}/{r['val_error']:.2f}%"
    return (
        f"iter {r['iteration']}/{target} ep {r['epoch']:.2f} lr {r['lr']:.4g} "
        f"train {r['train_loss']:.3f}/{r['train_error']:.2f}%{val} "
        f"test {r['test_loss']:.3f}/{r['test_error']:.2f}% "
        f"{r['images_per_s']:.0f} img/s {r['seconds']:.0f}s"
    )


def _tensorboard(out: Path, config: TrainConfig) -> Any:
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # the tensorboard package is optional
        warnings.warn("--tensorboard: the tensorboard package is not installed; skipping",
                      stacklevel=2)  # fmt: skip
        return None
    return SummaryWriter(str(out / "tensorboard"))


__all__ = [
    "TrainConfig",
    "TrainingInterrupted",
    "config_from_run",
    "make_optimizer",
    "make_step",
    "resume_command",
    "train",
]
