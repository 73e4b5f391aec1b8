"""The training loop: SGD with the recipe's step schedule (He et al. 2016, Sec. 4.2), evaluations,
checkpoints for exact resume, and the run directory (config.json, metrics.jsonl, *.pt).

A :class:`Trainer` holds one training state (model, optimiser, loader position, every RNG, warm-up,
best-so-far, metric sums); ``state_dict()`` is what last.pt, best.pt and final.pt hold, and
``load_state_dict()`` resumes from it. :meth:`Trainer.fit` reads as its steps: open the run
folder, build the components, restore, then ``train_step`` until a sync point is due.

Host syncs: none per step. The loss and error sums stay in device tensors and are read only at
"sync points": every ``log_every`` iterations (progress display and the non-finite check; by
default 50 on the CPU, evaluations only on CUDA), every warm-up check (``warmup_check_every``, 50
by default, nets of 110+ layers), every evaluation and checkpoint. A non-finite loss is therefore
caught at the next sync point, before any checkpoint is written, so last.pt is always the last
good state. SIGINT/SIGTERM are honoured after the current step (single process) or at the next
sync point (DDP, where all ranks must agree).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

from repro.data import CLASSES, Splits, input_normalization, load_splits
from repro.data.augment import Mean
from repro.devices import PLACEMENT_ENV, amp_name, resolve_amp, resolve_device
from repro.environment import environment
from repro.errors import ReproError
from repro.evaluate import evaluate
from repro.recipes import Warmup, build_schedule, get_recipe, lr_at
from repro.run_config import (
    TRAINER_NEVER_WRITES,
    EvalRecord,
    RunConfig,
    parse_run_config,
    write_run_config,
)
from repro.store import (
    BEST,
    FINAL,
    LAST,
    RunLock,
    append_metrics,
    check_writable,
    remove_stale_temp_files,
    reset_metrics,
    truncate_metrics,
)
from repro.train import ddp
from repro.train.checkpoint import (
    Checkpoint,
    CheckpointExtras,
    DDPAgreement,
    TrainingState,
    save_checkpoint,
)
from repro.train.components import (
    Components,
    build_components,
    infinite_batches,
    make_model,
    model_depth,
    set_lr,
)
from repro.train.config import (
    TrainConfig,
    check_bn_options,
    check_counts,
    fast_path,
    log_interval,
    resume_command,
)
from repro.train.metrics import Meter
from repro.train.progress import Progress
from repro.train.resume import RunState, inspect_run_dir
from repro.train.rng import rng_state, seed_everything, set_rng_state
from repro.train.signals import StopFlag, TrainingInterrupted


@dataclass
class LoopState:
    """Where training stands, beyond the components' own states (all saved in checkpoints)."""

    iteration: int = 0
    seconds: float = 0.0  # training time of earlier processes of this run
    best_value: float = math.inf
    best_iteration: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    stop_reason: str | None = None


class RuntimeKeys(TypedDict):
    """config.json's runtime keys, as the trainer resolved them (RunConfig's fields)."""

    seed: int
    split_seed: int
    deterministic: bool
    device: str
    device_requested: str
    amp: str
    tf32_matmul: bool
    tf32_cudnn: bool
    amp_requested: str | None
    channels_last: bool
    compile: bool
    compile_mode: str | None
    threads: int | None
    world_size: int
    per_rank_batch_size: int
    sync_bn: bool
    eval_batch_size: int
    log_every: int
    cuda_visible_devices: str | None
    placement: str | None


class NormalizationKeys(TypedDict):
    """config.json's input normalisation: per-channel mean/std, or the mean image's summary."""

    mean: list[float] | None
    std: list[float] | None
    mean_image: dict[str, object] | None


class DataKeys(TypedDict):
    data_root: str
    data_official: bool
    data_counts: dict[str, int]


@dataclass
class Due:
    """What the iteration just finished calls for; any of them is a sync point."""

    evaluate: bool
    checkpoint: bool
    warmup: bool
    log: bool
    stop: bool

    def any(self) -> bool:
        return self.evaluate or self.checkpoint or self.warmup or self.log or self.stop


class Clock:
    """Seconds of training (this process plus earlier ones) and images seen, for throughput."""

    def __init__(self, seconds_before: float) -> None:
        self.before = seconds_before
        self.t0 = self.t_mark = time.perf_counter()
        self.images = self.images_mark = 0

    def seconds(self, now: float | None = None) -> float:
        return self.before + (now or time.perf_counter()) - self.t0

    def images_per_s(self, now: float) -> float:
        """Throughput since this process started."""
        return self.images / max(now - self.t0, 1e-9)

    def images_per_s_since_mark(self, now: float) -> float:
        """Throughput since the last :meth:`mark` (the previous evaluation)."""
        return (self.images - self.images_mark) / max(now - self.t_mark, 1e-9)

    def mark(self) -> None:
        self.t_mark, self.images_mark = time.perf_counter(), self.images


@contextlib.contextmanager
def preserved_torch_settings() -> Iterator[None]:
    """Leave the calling process as it was: threads, deterministic algorithms, cuDNN benchmark."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
    )
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def setup_runtime(config: TrainConfig, device: torch.device) -> None:
    """Threads and determinism as the config asks (cuDNN autotuning when not deterministic)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def train(config: TrainConfig) -> Path:
    """Train as ``config`` says and return the run folder (resuming what is already there)."""
    dist = ddp.from_env()
    local_rank = dist.local_rank if dist.enabled else None
    device = resolve_device(config.device, local_rank, warn_cpu=dist.is_main)
    if dist.enabled:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        ddp.init(dist, device)
    try:
        with preserved_torch_settings():
            return Trainer(config, device, dist).fit()
    finally:
        ddp.shutdown()


class Trainer:
    """One training run: resolved once from a :class:`TrainConfig`, then :meth:`fit`."""

    def __init__(self, config: TrainConfig, device: torch.device, dist: ddp.DistInfo) -> None:
        """Everything resolved and built once: recipe, amp, fast path, seed, model, splits,
        normalisation, schedule, config.json's record, the components and the training state;
        :meth:`fit` only opens the run folder, restores and trains."""
        self.config, self.device, self.dist, self.out = config, device, dist, Path(config.out)
        self.recipe = get_recipe(config.recipe, **config.overrides)
        if self.recipe.batch_size % dist.world_size:
            raise ReproError(
                f"batch size {self.recipe.batch_size} is not divisible by the "
                f"{dist.world_size} processes"
            )
        self.amp_dtype = resolve_amp(config.amp, device, cuda_auto=self.recipe.amp_auto)
        if self.recipe.amp_auto == "off" and self.amp_dtype is None:
            disable_tf32()  # an fp32 recipe (`paper`) means fp32 convolutions and matmuls too
        self.fast = fast_path(config, device)  # the request stays in config, as asked
        check_counts(config)
        check_bn_options(config, self.recipe)
        setup_runtime(config, device)
        seed_everything(config.seed)  # the model's initialisation is the first draw
        model = make_model(config.model, config.model_kwargs)
        self.splits = load_splits(config.data_root, self.recipe.val_fraction, config.split_seed)
        self._check_fits_the_data(model, config.model)
        # Sec. 3.4/4.2: the per-pixel mean of the images trained on (or per-channel constants)
        self.input_mean, self.input_std = input_normalization(
            self.recipe.normalize, self.splits.train[0]
        )
        self.drop_last = self._drop_last()
        n_train = int(self.splits.train[1].numel())
        used = n_train - n_train % self.recipe.batch_size if self.drop_last else n_train
        self.schedule = build_schedule(self.recipe, used, model_depth(model, config.model))
        self.eval_every = config.eval_every or self.schedule.iterations_per_epoch
        self.log_every = log_interval(config.log_every, self.eval_every, device)
        self.checkpoint_every = config.checkpoint_every or self.eval_every
        total = self.schedule.total_iterations
        self.target = total if config.max_steps is None else min(total, config.max_steps)
        self.best_by = "val_error" if self.splits.val is not None else "test_error"
        self.run_config = self._run_config(model_shortcut(model))
        self.parts = self.build_components(model)
        self._start_state()

    def _start_state(self) -> None:
        """The training state at iteration 0 (what :meth:`load_state_dict` replaces) and the
        loop's companions: the lr, the clock, the batch stream, the progress display."""
        self.loop = LoopState()
        self.warmup = Warmup(self.schedule)
        self.meter, self.window = Meter(self.device), Meter(self.device)
        self.lr = self.schedule.base_lr
        self.clock = Clock(0.0)
        self.last_saved: int | None = None  # the iteration of the last last.pt written
        self.batches = infinite_batches(self.parts.loader)
        self.progress = Progress(
            enabled=self.dist.is_main and not self.config.quiet,
            total=self.target,
            iterations_per_epoch=self.schedule.iterations_per_epoch,
        )
        self.tensorboard: Any = None  # opened by fit(), with the run folder

    @property
    def model(self) -> torch.nn.Module:
        """The model as trained (after any BatchNorm conversion; unwrapped from DDP)."""
        return self.parts.model

    def _check_fits_the_data(self, model: torch.nn.Module, name: str) -> None:
        """A model head with one output per CIFAR-10 class, and a batch the training split fills."""
        head = getattr(model, "fc", None)
        classes = len(CLASSES)
        if isinstance(head, torch.nn.Linear) and head.out_features != classes:
            raise ReproError(
                f"{name} has a {head.out_features}-class head but CIFAR-10 has {classes} classes; "
                f"use a CIFAR model or --model-kwargs '{{\"num_classes\": {classes}}}'"
            )
        n_train, batch = int(self.splits.train[1].numel()), self.recipe.batch_size
        if batch > n_train:
            raise ReproError(
                f"--batch-size {batch} is larger than the {n_train} training images of "
                f"{self.splits.root}: every epoch would be one partial batch; use at most {n_train}"
            )

    def _drop_last(self) -> bool:
        """A last batch of one image per process cannot train batch norm: drop it (warned)."""
        n_train, batch = int(self.splits.train[1].numel()), self.recipe.batch_size
        remainder = n_train % batch
        drop = remainder > 0 and remainder // self.dist.world_size < 2
        if drop and self.dist.is_main:
            warnings.warn(
                f"{n_train} training images in batches of {batch}: the last batch of "
                f"{remainder} is dropped each epoch (too small for batch norm)",
                stacklevel=3,
            )
        return drop

    # ------------------------------------------------------------------ the run

    def fit(self) -> Path:
        """Train to the target iteration (resuming what the run folder holds); the run folder.
        The folder is locked for this process meanwhile: one writer per run."""
        lock = RunLock(self.out) if self.dist.is_main else None
        if lock is not None:
            check_writable(self.out)
            lock.acquire()
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> Path:
        state = self.open_run_dir()
        if state.complete:
            self.say(f"{self.out}: run already complete ({FINAL} exists); nothing to do")
            return self.out
        if state.checkpoint is not None:
            self.load_state_dict(state.checkpoint)
            self.last_saved = self.loop.iteration
        self.start_run_files(state)
        self.tensorboard = open_tensorboard(self.out, self.config.tensorboard and self.dist.is_main)
        self.clock = Clock(self.loop.seconds)
        self.lr = lr_at(self.schedule, self.loop.iteration, self.warmup.active)
        self.progress.start(self.loop.iteration)
        with StopFlag() as flag:
            while self.loop.iteration < self.target and self.loop.stop_reason is None:
                self.train_step()
                due = self.due(flag)
                if due.any():
                    self.sync_point(due, flag)
        self.progress.close()
        self.finish()
        return self.out

    def open_run_dir(self) -> RunState:
        """Every check of the run folder, before anything in it changes; says how the run goes
        on (resumed, recovered, extended) and clears what a killed write left behind."""
        state = inspect_run_dir(self.out, self.run_config, self.target, self.config.resume)
        if state.checkpoint is not None and not state.complete:
            recorded = parse_run_config(state.checkpoint["config"], f"{self.out / LAST} 'config'")
            note = ddp.check_world_size(recorded, self.dist, self.out)
            state.notes += [note] if note else []
        if self.dist.is_main:
            for stale in remove_stale_temp_files(self.out):
                state.notes.append(f"removed {stale.name}, left by a write that was interrupted")
            for note in state.notes:
                self.say(f"{self.out}: {note}")
        ddp.barrier(self.dist)  # every rank has read the folder before rank 0 changes it
        return state

    def say(self, line: str) -> None:
        """One line for the user (rank 0, unless --quiet)."""
        if self.dist.is_main and not self.config.quiet:
            print(line, flush=True)

    def build_components(self, model: torch.nn.Module) -> Components:
        """The model on its device (BN as the run asks), SGD, the loader and the step."""
        return build_components(
            model,
            self.recipe,
            *self.splits.train,
            device=self.device,
            amp_dtype=self.amp_dtype,
            channels_last=self.fast.channels_last,
            compile_mode=self.fast.compile_mode,
            seed=self.config.seed,
            drop_last=self.drop_last,
            mean=self.input_mean,
            std=self.input_std,
            dist=self.dist,
            sync_bn=self.config.sync_bn,
        )

    def start_run_files(self, state: RunState) -> None:
        """config.json in full; metrics.jsonl empty for a new run, cut back to the checkpoint for
        a resumed one; a --max-steps run that is extended loses its final.pt."""
        if self.dist.is_main:
            write_run_config(self.out, self.run_config)
            if state.checkpoint is None:
                reset_metrics(self.out)
                (self.out / BEST).unlink(missing_ok=True)
            else:
                truncate_metrics(self.out, self.loop.iteration)
            if state.extend_final:
                (self.out / FINAL).unlink()
        ddp.barrier(self.dist)

    def train_step(self) -> None:
        """One SGD step on the next batch at the scheduled lr; the sums stay on the device."""
        x, y = next(self.batches)
        world = self.dist.world_size
        scale = world / y.shape[0]
        if self.dist.enabled:
            x, y = x[self.dist.rank :: world], y[self.dist.rank :: world]
        self.lr = lr_at(self.schedule, self.loop.iteration, self.warmup.active)
        set_lr(self.parts.optimizer, self.lr)
        loss_sum, errors = self.parts.step(x, y, scale)
        self.meter.add(loss_sum, errors, y.shape[0])
        if self.warmup.active:
            self.window.add(loss_sum, errors, y.shape[0])
        self.loop.iteration += 1
        self.clock.images += y.shape[0] * world
        self.progress.advance(self.loop.iteration)

    def due(self, flag: StopFlag) -> Due:
        """Which sync-point work the iteration just finished calls for."""
        it = self.loop.iteration
        due = Due(
            evaluate=it % self.eval_every == 0 or it == self.target,
            checkpoint=it % self.checkpoint_every == 0 or it == self.target,
            warmup=self.warmup.due(it),
            log=it % self.log_every == 0,
            stop=flag.signum is not None and not self.dist.enabled,
        )
        if self.dist.enabled and (due.log or due.evaluate or due.checkpoint):
            due.stop = ddp.any_rank(flag.signum is not None, self.dist, self.device)
        return due

    def sync_point(self, due: Due, flag: StopFlag) -> None:
        """Read the running sums once, then warm-up check, evaluation, checkpoint, stop."""
        loss, error = self.read_training_metrics()
        if due.warmup:
            self.check_warmup()
        now = time.perf_counter()
        self.progress.postfix(loss, error, self.clock.images_per_s(now))
        if due.evaluate and self.validate(loss, error, now):
            due.checkpoint = True  # early stopping: the run ends here
        if due.checkpoint or due.stop:
            self.save_last()
        if due.stop:
            self.progress.close()
            raise flag.interrupted(self.loop.iteration, LAST, resume_command(self.config))

    def read_training_metrics(self) -> tuple[float, float]:
        """Mean training loss and error (%) since the last evaluation; a non-finite loss ends the
        run here, before any checkpoint, so last.pt stays the last good state."""
        loss, error, finite = Meter.read(ddp.all_reduce_sum(self.meter.packed(), self.dist))
        if not finite:
            last = (
                f"{self.out / LAST} (iteration {self.last_saved})"
                if self.last_saved is not None
                else "none yet"
            )
            raise ReproError(
                f"training diverged: non-finite loss by iteration {self.loop.iteration} "
                f"(lr {self.lr:g}); last good checkpoint: {last}; lower --lr or check the data"
            )
        return loss, error

    def check_warmup(self) -> None:
        """Sec. 4.2: lr 0.01 until the training error is below 80%, then back to 0.1."""
        _, window_error, _ = Meter.read(ddp.all_reduce_sum(self.window.packed(), self.dist))
        self.window.reset()
        it, threshold = self.loop.iteration, self.schedule.warmup_until_error
        if self.warmup.update(it, window_error) and self.dist.is_main and not self.config.quiet:
            why = (
                f"training error {window_error:.1f}% < {threshold:g}%"
                if window_error < threshold
                else f"bounded by the first milestone; training error still {window_error:.1f}%"
            )
            self.progress.write(
                f"warm-up over at iteration {self.warmup.ended_at} ({why}): lr back to the "
                f"schedule's {lr_at(self.schedule, it):g}"
            )

    def validate(self, train_loss: float, train_error: float, now: float) -> bool:
        """Evaluate, log the record, keep best.pt; True when early stopping ends the run."""
        ddp.broadcast_buffers(self.parts.model, self.dist)
        record = self.metrics_record(train_loss, train_error, now)
        self.meter.reset()
        self.clock.images_mark = self.clock.images
        loop, value = self.loop, record.error(self.best_by)
        improved = value < loop.best_value
        if improved:
            loop.best_value, loop.best_iteration, loop.bad_evals = value, loop.iteration, 0
        else:
            loop.bad_evals += 1
        patience = self.recipe.early_stopping_patience
        if patience and loop.bad_evals >= patience:
            loop.stop_reason = "early_stopping"
        if self.dist.is_main:
            append_metrics(self.out, record)
            self.progress.write(format_record(record, self.target))
            log_scalars(self.tensorboard, record)
            if improved:
                best = self.checkpoint({"best_value": value, "metrics": record.to_dict()})
                save_checkpoint(best, self.out / BEST)
        self.clock.mark()
        return loop.stop_reason == "early_stopping"

    def metrics_record(self, train_loss: float, train_error: float, now: float) -> EvalRecord:
        """One metrics.jsonl record: training means since the last one, val and test evaluation."""

        def run(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
            r = evaluate(
                self.parts.model,
                *split,
                self.input_mean,
                self.input_std,
                batch_size=self.config.eval_batch_size,
                device=self.device,
                channels_last=self.fast.channels_last,
                amp=self.amp_dtype,
            )
            return r.loss, r.error_percent

        val_loss, val_error = run(self.splits.val) if self.splits.val is not None else (None, None)
        test_loss, test_error = run(self.splits.test)
        it = self.loop.iteration
        return EvalRecord(
            epoch=it / self.schedule.iterations_per_epoch,
            iteration=it,
            lr=self.lr,
            train_loss=train_loss,
            train_error=train_error,
            val_loss=val_loss,
            val_error=val_error,
            test_loss=test_loss,
            test_error=test_error,
            seconds=self.clock.seconds(now),
            images_per_s=self.clock.images_per_s_since_mark(now),
        )

    def save_last(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.checkpoint(), self.out / LAST)
        self.last_saved = self.loop.iteration

    def finish(self) -> None:
        """final.pt (the state at the end, why it ended, DDP agreement) and the closing line."""
        loop = self.loop
        if loop.stop_reason is None:
            done = loop.iteration >= self.schedule.total_iterations
            loop.stop_reason = "schedule" if done else "max_steps"
        ddp.broadcast_buffers(self.parts.model, self.dist)
        difference = ddp.max_rank_difference(self.parts.model, self.dist)
        if self.dist.is_main:
            agreement = DDPAgreement(
                world_size=self.dist.world_size, max_rank_difference=difference
            )
            final = self.checkpoint({"stop_reason": loop.stop_reason, "ddp": agreement})
            save_checkpoint(final, self.out / FINAL)
            if self.tensorboard is not None:
                self.tensorboard.close()
            if not self.config.quiet:
                best = (
                    f"best {self.best_by} {loop.best_value:.2f}% at iteration {loop.best_iteration}"
                )
                print(
                    f"{self.out}: done ({loop.stop_reason}) after {loop.iteration} iterations; "
                    f"{best}",
                    flush=True,
                )
        ddp.barrier(self.dist)

    # ------------------------------------------------------------------ the training state

    def state_dict(self) -> TrainingState:
        """Everything that resuming needs to continue bit-identically (the checkpoint format)."""
        parts, loop, it = self.parts, self.loop, self.loop.iteration
        return {
            "model_name": self.config.model,
            "model_kwargs": self.config.model_kwargs,
            "config": self.run_config.to_dict(),
            "model": parts.model.state_dict(),
            "iteration": it,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": {
                "warmup": self.warmup.state_dict(),
                "lr": lr_at(self.schedule, it, self.warmup.active),
            },
            "loader": parts.loader.state_dict(),
            "scaler": None if parts.scaler is None else parts.scaler.state_dict(),
            "rng": rng_state(),
            "metrics_state": {
                "meter": self.meter.state_dict(),
                "window": self.window.state_dict(),
                "seconds": self.clock.seconds(),
                "best_value": loop.best_value,
                "best_iteration": loop.best_iteration,
                "bad_evals": loop.bad_evals,
                "stop_reason": loop.stop_reason,
            },
            "best_by": self.best_by,
            # per-pixel-mean: the mean image the run normalises with (every reader uses it)
            "mean_image": self.input_mean if isinstance(self.input_mean, torch.Tensor) else None,
        }

    def load_state_dict(self, state: TrainingState) -> None:
        """Restore :meth:`state_dict` (a ReproError if it does not fit this run's model)."""
        parts = self.parts
        try:
            parts.model.load_state_dict(state["model"])
            parts.optimizer.load_state_dict(state["optimizer"])
            parts.loader.load_state_dict(state["loader"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ReproError(
                f"{self.out / LAST} does not fit this run "
                f"({str(exc).splitlines()[0][:160]}); use a new --out folder"
            ) from None
        scaler = state.get("scaler")
        if parts.scaler is not None and scaler is not None:
            parts.scaler.load_state_dict(scaler)
        self._check_mean_image(state.get("mean_image"))
        self.warmup.load_state_dict(state["scheduler"]["warmup"])
        saved = state["metrics_state"]
        self.meter.load_state_dict(saved["meter"])
        self.window.load_state_dict(saved["window"])
        self.loop = LoopState(
            int(state["iteration"]),
            float(saved["seconds"]),
            saved["best_value"],
            saved["best_iteration"],
            saved["bad_evals"],
            saved.get("stop_reason"),
        )
        set_rng_state(state["rng"])

    def _check_mean_image(self, saved: Any) -> None:
        """A resumed per-pixel-mean run normalises as before: the training images are the same."""
        mine = self.input_mean
        if not (isinstance(saved, torch.Tensor) and isinstance(mine, torch.Tensor)):
            return
        if saved.shape != mine.shape or not torch.equal(saved.cpu(), mine.cpu()):
            raise ReproError(
                f"{self.out / LAST} was trained on other images (its per-pixel mean image "
                "differs from this data's); resume with the run's --data-root"
            )

    def checkpoint(self, extra: CheckpointExtras | None = None) -> Checkpoint:
        """What last.pt (no extras), best.pt and final.pt hold: the training state plus ``extra``."""
        return {**self.state_dict(), **(extra or {})}

    def _run_config(self, shortcut: str | None) -> RunConfig:
        """config.json: the resolved recipe, schedule, runtime, data and environment, in full."""
        config, schedule = self.config, self.schedule
        return RunConfig(
            model=config.model,
            model_kwargs=config.model_kwargs,
            shortcut=shortcut,
            recipe=self.recipe.name,
            **self.recipe.to_dict(),
            warmup_active=schedule.warmup_lr is not None,
            warmup_limit_iteration=schedule.warmup_limit,
            iterations_per_epoch=schedule.iterations_per_epoch,
            milestone_iterations=list(schedule.milestones),
            total_iterations=schedule.total_iterations,
            max_steps=config.max_steps,
            eval_every=self.eval_every,
            drop_last=self.drop_last,
            checkpoint_every=self.checkpoint_every,
            best_by=self.best_by,
            best_by_note=None
            if self.best_by == "val_error"
            else "no validation split: best.pt is chosen by TEST error (optimistically biased)",
            **self._runtime_config(),
            **normalization_config(self.input_mean, self.input_std),
            **data_config(self.splits),
            environment=environment(self.device),
            absent=TRAINER_NEVER_WRITES,
        )

    def _runtime_config(self) -> RuntimeKeys:
        """config.json's runtime keys (RunConfig's fields of the same names)."""
        config = self.config
        return {
            "seed": config.seed,
            "split_seed": config.split_seed,
            "deterministic": config.deterministic,
            "device": str(self.device),
            "device_requested": config.device,
            "amp": amp_name(self.amp_dtype),
            # TF32 (A100/H100): off for an fp32 recipe (issue 22); otherwise PyTorch's defaults
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            # --amp as asked: "bf16" here (not "auto") declares a deviation from a fp32 recipe
            "amp_requested": config.amp_requested if config.resume else config.amp,
            "channels_last": self.fast.channels_last,  # as resolved; the request is config's
            "compile": self.fast.compile,
            "compile_mode": config.compile_mode if self.fast.compile else None,
            "threads": config.threads,
            "world_size": self.dist.world_size,
            "per_rank_batch_size": self.recipe.batch_size // self.dist.world_size,
            "sync_bn": config.sync_bn,
            "eval_batch_size": config.eval_batch_size,
            "log_every": self.log_every,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "placement": os.environ.get(PLACEMENT_ENV),
        }


def disable_tf32() -> None:
    """fp32 as declared: no TF32 in cuBLAS matmuls or cuDNN convolutions (both ignored on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def model_shortcut(model: torch.nn.Module) -> str | None:
    """The shortcut option the built model uses (Sec. 3.3: A, B or C; None for a plain net),
    recorded explicitly rather than left implied by empty model_kwargs."""
    if getattr(model, "residual", True) is False:
        return None
    return getattr(model, "shortcut_option", None)


def normalization_config(mean: Mean, std: Sequence[float]) -> NormalizationKeys:
    """config.json's record of the input normalisation (its name is the recipe's ``normalize``):
    per-channel ``mean``/``std``, or for a mean image null mean/std and the image's per-channel
    averages and SHA-256 (the image itself is in every checkpoint, ``mean_image``)."""
    if not isinstance(mean, torch.Tensor):
        return {"mean": list(mean), "std": list(std), "mean_image": None}
    image = mean.detach().cpu().contiguous()
    return {
        "mean": None,
        "std": None,
        "mean_image": {
            "shape": list(image.shape),
            "channel_means": [float(v) for v in image.double().mean(dim=(1, 2))],
            "sha256": hashlib.sha256(image.numpy().tobytes()).hexdigest(),
        },
    }


def data_config(splits: Splits) -> DataKeys:
    """Where the data came from and how many images each split holds."""
    root = splits.root.parent if splits.root.name == "cifar-10-batches-py" else splits.root
    return {
        "data_root": str(root.resolve()),
        "data_official": splits.official,
        "data_counts": splits.counts(),
    }


def format_record(r: EvalRecord, target: int) -> str:
    """One evaluation as a progress line."""
    val = "" if r.val_error is None else f" val {r.val_loss:.3f}/{r.val_error:.2f}%"
    return (
        f"iter {r.iteration}/{target} ep {r.epoch:.2f} lr {r.lr:.4g} "
        f"train {r.train_loss:.3f}/{r.train_error:.2f}%{val} "
        f"test {r.test_loss:.3f}/{r.test_error:.2f}% "
        f"{r.images_per_s:.0f} img/s {r.seconds:.0f}s"
    )


def open_tensorboard(out: Path, enabled: bool) -> Any:
    """A SummaryWriter in ``out/tensorboard`` when asked for and installed (else None, warned)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # the tensorboard package is optional
        warnings.warn(
            "--tensorboard: the tensorboard package is not installed; skipping", stacklevel=2
        )
        return None
    return SummaryWriter(str(out / "tensorboard"))


def log_scalars(writer: Any, record: EvalRecord) -> None:
    if writer is None:
        return
    for key, value in record.to_dict().items():
        if isinstance(value, (int, float)) and key not in ("iteration", "epoch"):
            writer.add_scalar(key, value, record.iteration)


__all__ = ["Trainer", "TrainConfig", "TrainingInterrupted", "train"]
