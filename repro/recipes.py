"""Named training recipes and the learning-rate schedule as a pure function.

* ``paper``: He et al. 2016, Sec. 4.2, every detail the paper states, on all 50k training images.
  SGD 0.9, wd 1e-4 on every parameter, batch 128 "on two GPUs" (BN statistics over 64 images per
  GPU: ``bn_batch=64``), lr 0.1 /10 at 32k and 48k iterations, stop at 64k, the per-pixel mean
  subtracted (Sec. 3.4/4.2), fp32 (``amp_auto="off"``), 0.01 warm-up for 110 layers and deeper,
  cut at the first lr drop at the latest. The training set: the paper's sentence is "We start with
  a learning rate of 0.1, divide it by 10 at 32k and 48k iterations, and terminate training at 64k
  iterations, which is determined on a 45k/5k train/val split." The 45k/5k split is where the
  schedule was *determined*; Table 6 then reports test error, with nothing held out, and the
  reported nets are (most plausibly, and as most reproductions do) trained on the full 50k. So
  ``paper`` trains on all 50k, and ``paper-val`` is the same recipe on the 45k/5k split: the study
  on which the schedule was chosen (its best.pt is chosen on the 5k).
* ``paper-val``: ``paper`` on the 45k/5k train/val split (validation-selected best.pt).
* ``common``: the widely used public recipe (akamaster/pytorch_resnet_cifar10): 200 epochs on all
  50k images, lr /10 at epochs 100 and 150, no validation split (best by test error: biased),
  per-channel mean/std, BN over the whole batch, bf16 autocast on CUDA.
* ``resnet18-cifar``: a ResNet-18 recipe (wd 5e-4, StepLR(30, 0.1), 200 epochs, 20% validation
  split, early stopping with patience 20 evaluations).

Fields added after runs were already written have a LEGACY value (``repro.run_config``'s
``LEGACY_VALUES``): what a run whose config.json lacks the field did, so that such a run resumes
and is judged as what it was.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypedDict

from repro.data.normalization import NORMALIZATIONS
from repro.errors import ReproError

BN_BATCH_OFF = "off"  # --bn-batch off: BN statistics over each device's whole batch
WEIGHT_DECAY_POLICIES = ("all", "weights")
WARMUP_BOUNDS = ("first-milestone", "none")
AMP_AUTO_CHOICES = ("bf16", "off")
BN_BATCH_AND_SYNC_BN = (
    "--sync-bn and --bn-batch contradict (statistics over the whole global batch vs over chunks "
    "of each device's batch); drop one (--bn-batch off for whole-batch statistics)"
)


def _flag(default: Any, type_: type | None, help_text: str = "", **argparse_kw: Any) -> Any:
    """A recipe field that `repro train` overrides with ``--<field>`` (argparse options in the
    field's metadata; ``type_`` None: a boolean ``--x/--no-x``)."""
    return field(
        default=default, metadata={"cli": {"type": type_, "help": help_text, **argparse_kw}}
    )


@dataclass(frozen=True)
class Recipe:
    """Every training hyper-parameter of one recipe; all of them appear in config.json."""

    name: str
    batch_size: int = _flag(128, int, "global batch size")
    lr: float = _flag(0.1, float, "base learning rate")
    momentum: float = _flag(0.9, float)
    weight_decay: float = _flag(1e-4, float)
    nesterov: bool = _flag(False, None, "Nesterov momentum")
    # length in epochs (converted with ceil(N / batch) it/epoch) or in iterations: exactly one set
    epochs: int | None = _flag(None, int, "schedule length in epochs")
    iterations: int | None = _flag(None, int, "schedule length in iterations")
    milestones: tuple[int, ...] = _flag((), int, "lr drops (in --milestone-unit)", nargs="+")
    milestone_unit: str = _flag("iteration", str, choices=("epoch", "iteration"))
    # StepLR: a milestone every step_size units (adds to milestones)
    step_size: int | None = _flag(None, int, "StepLR: a drop every N milestone units (0: off)")
    gamma: float = _flag(0.1, float, "lr factor at each milestone")
    warmup: str = _flag(
        "auto", str, "0.01 warm-up: auto = depth >= 110 (Sec. 4.2)", choices=("auto", "on", "off")
    )
    warmup_lr: float = _flag(0.01, float)
    warmup_until_error: float = _flag(80.0, float, "percent: warm-up ends below it (default 80)")
    warmup_min_depth: int = _flag(110, int)
    warmup_check_every: int = _flag(
        50, int, "iterations between warm-up checks (one host sync each)"
    )
    warmup_bound: str = _flag(
        "first-milestone",
        str,
        "latest end of the warm-up: first-milestone (it cannot outlive the first lr drop; "
        "Sec. 4.2's 'about 400 iterations' ends far earlier) or none (the error threshold alone)",
        metavar="|".join(WARMUP_BOUNDS),
    )
    split: str = "train45k"
    val_fraction: float = _flag(0.1, float, "held-out share of the training set")
    early_stopping_patience: int | None = _flag(
        None, int, "evaluations without val improvement; 0 = off"
    )
    weight_decay_policy: str = _flag(
        "all",
        str,
        "parameters weight decay acts on: all (Sec. 4.2's 'weight decay of 0.0001') or weights "
        "(conv and fc weights only; BN gamma/beta and biases get none)",
        metavar="|".join(WEIGHT_DECAY_POLICIES),
    )
    bn_batch: int | None = _flag(
        None,
        str,
        "BatchNorm statistics over chunks of N images of each device's batch, as on the paper's "
        "two GPUs (Sec. 4.2: batch 128 on two GPUs, 64 each); off = over the whole batch",
        metavar="N|off",
    )
    normalize: str = _flag(
        "per-channel",
        str,
        "input normalisation: per-pixel-mean (the mean image of the training images subtracted, "
        "no std; Sec. 3.4/4.2), per-channel (CIFAR-10 mean/std) or imagenet (ImageNet mean/std)",
        metavar="|".join(NORMALIZATIONS),
    )
    # what `--amp auto` means on CUDA: bf16 (the fast path) or off (fp32, the paper's precision);
    # the CPU's auto is always fp32. `--amp bf16` asks for bf16 explicitly (a declared deviation).
    amp_auto: str = "bf16"
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        iterations=64_000,
        milestones=(32_000, 48_000),
        milestone_unit="iteration",
        split="train",
        val_fraction=0.0,
        bn_batch=64,
        normalize="per-pixel-mean",
        amp_auto="off",
        source="He et al. 2016, Sec. 4.2 (all 50k training images; the schedule itself was "
        "determined on a 45k/5k split: recipe paper-val)",
    ),
    "paper-val": Recipe(
        name="paper-val",
        iterations=64_000,
        milestones=(32_000, 48_000),
        milestone_unit="iteration",
        split="train45k",
        val_fraction=0.1,
        bn_batch=64,
        normalize="per-pixel-mean",
        amp_auto="off",
        source="He et al. 2016, Sec. 4.2: the 45k/5k train/val split the schedule was "
        "determined on",
    ),
    "common": Recipe(
        name="common",
        epochs=200,
        milestones=(100, 150),
        milestone_unit="epoch",
        split="train",
        val_fraction=0.0,
        source="akamaster/pytorch_resnet_cifar10 (best checkpoint chosen by TEST error: biased)",
    ),
    "resnet18-cifar": Recipe(
        name="resnet18-cifar",
        weight_decay=5e-4,
        epochs=200,
        milestone_unit="epoch",
        step_size=30,
        warmup="off",
        split="train80",
        val_fraction=0.2,
        early_stopping_patience=20,
        source="seed project 004: ResNet-18, StepLR(30, 0.1), 20% validation, patience 20",
    ),
}

RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Recipe))
# LEGACY_VALUES (repro.run_config): what a run did whose config.json predates the field.
# The fields `repro train` can override, with the argparse options of each.
RECIPE_FLAGS: dict[str, dict[str, Any]] = {
    f.name: f.metadata["cli"] for f in dataclasses.fields(Recipe) if "cli" in f.metadata
}


def split_name(val_fraction: float) -> str:
    """Name of the training split that remains after holding out ``val_fraction``."""
    if val_fraction == 0:
        return "train"
    if math.isclose(val_fraction, 0.1):
        return "train45k"
    return f"train{round(100 * (1 - val_fraction)):d}"


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with ``overrides`` applied (None values are ignored); validated."""
    if name not in RECIPES:
        raise ReproError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(overrides) - set(RECIPE_FIELDS))
    if unknown:
        raise ReproError(f"unknown recipe field(s) {', '.join(unknown)}")
    base = RECIPES[name]
    if "bn_batch" in overrides:
        overrides["bn_batch"] = parse_bn_batch(overrides["bn_batch"])
    if "epochs" in overrides and "iterations" not in overrides:
        overrides["iterations"] = None
    elif "iterations" in overrides and "epochs" not in overrides:
        overrides["epochs"] = None
    if overrides.get("milestones") and overrides.get("step_size"):
        raise ReproError(
            "--milestones and --step-size are two lr schedules: give one (milestones at the "
            "iterations or epochs listed, or a drop every --step-size)"
        )
    if "milestones" in overrides:
        overrides["milestones"] = tuple(int(m) for m in overrides["milestones"])
        overrides.setdefault("step_size", None)
        if "milestone_unit" not in overrides:  # milestones count in the unit of the run length
            by_epochs = overrides.get("epochs", base.epochs) is not None
            overrides["milestone_unit"] = "epoch" if by_epochs else "iteration"
    if "val_fraction" in overrides and "split" not in overrides:
        overrides["split"] = split_name(float(overrides["val_fraction"]))
    recipe = dataclasses.replace(base, **overrides)
    validate_recipe(recipe)
    return recipe


def parse_bn_batch(value: Any) -> int | None:
    """``--bn-batch``: a number of images (an int, or its digits) or ``off`` (None: the whole
    batch); ReproError naming the flag for anything else."""
    if value is None or value == BN_BATCH_OFF:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ReproError(f"--bn-batch must be a number of images >= 2 or 'off', got {value!r}")


def _check_choices(r: Recipe) -> None:
    """One ReproError naming the flag for a word outside a field's vocabulary."""
    for name, choices in (
        ("normalize", NORMALIZATIONS),
        ("weight_decay_policy", WEIGHT_DECAY_POLICIES),
        ("warmup_bound", WARMUP_BOUNDS),
        ("amp_auto", AMP_AUTO_CHOICES),
    ):
        value = getattr(r, name)
        if value not in choices:
            flag = name.replace("_", "-")
            raise ReproError(f"unknown --{flag} {value!r}; use one of {', '.join(choices)}")
    if r.bn_batch is not None and r.bn_batch < 2:
        raise ReproError(
            f"--bn-batch must be >= 2 images (BN over fewer has no batch statistics) or 'off', "
            f"got {r.bn_batch}"
        )


def validate_recipe(r: Recipe) -> None:
    """ReproError for an inconsistent recipe (each message says which field to fix)."""
    if (r.epochs is None) == (r.iterations is None):
        raise ReproError("set exactly one of epochs and iterations")
    if (r.epochs is not None and r.epochs < 1) or (r.iterations is not None and r.iterations < 1):
        raise ReproError("--epochs and --iterations must be >= 1")
    if r.batch_size < 1:
        raise ReproError(f"--batch-size must be >= 1, got {r.batch_size}")
    for name, ok, rule in (
        ("lr", 0 < r.lr < math.inf, "a finite number > 0"),
        ("momentum", 0 <= r.momentum < 1, "in [0, 1) (1 or more makes SGD diverge)"),
        ("weight-decay", 0 <= r.weight_decay < math.inf, "a finite number >= 0"),
        ("gamma", 0 < r.gamma <= 1, "in (0, 1]"),
        ("warmup-lr", 0 < r.warmup_lr < math.inf, "a finite number > 0"),
    ):
        if not ok:  # NaN fails every comparison, so it lands here too
            raise ReproError(f"--{name} must be {rule}, got {getattr(r, name.replace('-', '_'))}")
    if r.milestone_unit not in ("epoch", "iteration"):
        raise ReproError(f"milestone unit must be 'epoch' or 'iteration', got {r.milestone_unit!r}")
    if list(r.milestones) != sorted(r.milestones) or any(m < 1 for m in r.milestones):
        raise ReproError(f"--milestones must be increasing positive numbers, got {r.milestones}")
    if r.step_size is not None and r.step_size < 1:
        raise ReproError(f"--step-size must be >= 1, got {r.step_size}")
    if r.warmup not in ("auto", "on", "off"):
        raise ReproError(f"warmup must be auto, on or off, got {r.warmup!r}")
    if r.warmup_check_every < 1:
        raise ReproError(f"--warmup-check-every must be >= 1, got {r.warmup_check_every}")
    if not 0.0 <= r.val_fraction < 1.0:
        raise ReproError(
            f"--val-fraction (validation fraction) must be in [0, 1), got {r.val_fraction}"
        )
    if r.early_stopping_patience is not None and r.early_stopping_patience < 1:
        raise ReproError("--early-stopping-patience must be >= 1 (0 turns it off)")
    if r.early_stopping_patience is not None and r.val_fraction == 0:
        raise ReproError("early stopping needs a validation split (val_fraction > 0)")
    _check_choices(r)


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    """Optimizer steps per pass over ``num_train`` images (last batch kept: ceil)."""
    return math.ceil(num_train / batch_size)


@dataclass(frozen=True)
class Schedule:
    """A recipe resolved against a dataset size and a model depth: all in iterations."""

    base_lr: float
    gamma: float
    milestones: tuple[int, ...]  # iterations at which lr is multiplied by gamma
    total_iterations: int
    iterations_per_epoch: int
    warmup_lr: float | None  # None: no warm-up for this model
    warmup_until_error: float
    warmup_check_every: int
    warmup_limit: int | None = (
        None  # the warm-up is over by this step at the latest (None: no bound)
    )


def build_schedule(recipe: Recipe, num_train: int, depth: int | None) -> Schedule:
    """Resolve epochs/milestones to iterations for ``num_train`` images and decide the warm-up."""
    ipe = iterations_per_epoch(num_train, recipe.batch_size)
    unit = ipe if recipe.milestone_unit == "epoch" else 1
    if recipe.iterations is not None:
        total = recipe.iterations
    else:
        assert recipe.epochs is not None  # validate_recipe: exactly one of the two is set
        total = recipe.epochs * ipe
    length = total if unit == 1 else recipe.epochs or math.ceil(total / ipe)
    marks = set(recipe.milestones)
    if recipe.step_size is not None:
        marks |= set(range(recipe.step_size, length, recipe.step_size))
    milestones = tuple(sorted(m * unit for m in marks))
    warm = recipe.warmup == "on" or (
        recipe.warmup == "auto" and depth is not None and depth >= recipe.warmup_min_depth
    )
    bounded = recipe.warmup_bound == "first-milestone" and milestones
    return Schedule(
        base_lr=recipe.lr,
        gamma=recipe.gamma,
        milestones=milestones,
        total_iterations=int(total),
        iterations_per_epoch=ipe,
        warmup_lr=recipe.warmup_lr if warm else None,
        warmup_until_error=recipe.warmup_until_error,
        warmup_check_every=recipe.warmup_check_every,
        warmup_limit=milestones[0] if bounded else None,
    )


def lr_at(schedule: Schedule, iteration: int, in_warmup: bool = False) -> float:
    """Learning rate of optimizer step ``iteration`` (0-based) - Sec. 4.2's step schedule.

    ``in_warmup`` is whether the warm-up (0.01 until training error < 80%) is still on; it only
    matters when the schedule has a warm-up, and never from ``warmup_limit`` on (the first
    milestone: a warm-up cannot outlive the first lr drop). Milestone m means steps m, m+1, ...
    use lr*gamma.
    """
    limit = schedule.warmup_limit
    if in_warmup and schedule.warmup_lr is not None and (limit is None or iteration < limit):
        return schedule.warmup_lr
    drops = sum(1 for m in schedule.milestones if iteration >= m)
    lr = schedule.base_lr * schedule.gamma**drops
    return float(f"{lr:.12g}")  # 0.001, not 0.0010000000000000002


class WarmupState(TypedDict):
    """A :class:`Warmup` in a checkpoint."""

    enabled: bool
    active: bool
    ended_at: int | None


class Warmup:
    """Tracks the warm-up: on from step 0 (if the schedule has one) until a check finds the
    training error of the last ``warmup_check_every`` steps below ``warmup_until_error``, or
    the first check at or after ``warmup_limit`` (the first milestone), whichever comes first.

    Sec. 4.2 ends the warm-up when "the training error is below 80% (about 400 iterations)"; a
    net that never gets there would otherwise keep lr 0.01 through both milestones. From the
    limit on :func:`lr_at` gives the schedule's lr whatever this tracker says; the check there
    only stops the checks (and their host syncs). Checked every ``warmup_check_every``
    iterations (one host sync each) rather than every step.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.enabled = schedule.warmup_lr is not None
        self.threshold = schedule.warmup_until_error
        self.every = schedule.warmup_check_every
        self.limit = schedule.warmup_limit
        self.active = self.enabled
        self.ended_at: int | None = None

    def due(self, iteration: int) -> bool:
        """Whether a check is due after ``iteration`` steps have been done."""
        return self.active and iteration > 0 and iteration % self.every == 0

    def update(self, iteration: int, window_error: float) -> bool:
        """Feed the window's training error (percent) at a check; True when warm-up just ended
        (the error went below the threshold, or the limit has been reached)."""
        limit = self.limit
        past_limit = limit is not None and iteration >= limit
        if self.active and (window_error < self.threshold or past_limit):
            self.active = False
            # past the limit the lr went back at the limit itself (lr_at), not at this check
            self.ended_at = limit if limit is not None and past_limit else iteration
            return True
        return False

    def state_dict(self) -> WarmupState:
        return {"enabled": self.enabled, "active": self.active, "ended_at": self.ended_at}

    def load_state_dict(self, state: WarmupState) -> None:
        self.enabled = bool(state["enabled"])
        self.active = bool(state["active"])
        self.ended_at = state["ended_at"]
