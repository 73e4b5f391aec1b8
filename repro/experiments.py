"""Experiments (which models) and presets (which recipe, how long) of a reproduction matrix.

What a matrix is, read alike by its launchers (`repro reproduce`, Slurm, import), the claims and
the report, so it sits below all three (issue 25).

Experiments follow the paper's CIFAR-10 section (He et al. 2016, Sec. 4.2): ``core`` is the
degradation pair and its residual cure, ``fig6`` the nets of Fig. 6, ``table6`` the ResNets of
Table 6.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from repro.baselines import load_baseline
from repro.errors import ReproError
from repro.recipes import RECIPES, Recipe, get_recipe, validate_recipe

EXPERIMENTS: dict[str, tuple[str, ...]] = {
    "core": ("plain20", "plain56", "resnet20", "resnet56"),
    "fig6": (
        "plain20",
        "plain32",
        "plain44",
        "plain56",
        "plain110",  # Fig. 6 left: trained, "higher than 60% and not displayed"
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ),
    "table6": ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"),
}


@dataclass(frozen=True)
class Preset:
    """One way of running the matrix: the trainer recipe plus the overrides this preset adds."""

    name: str
    recipe: str
    description: str
    needs_full_data: bool = False
    needs_cuda: bool = False
    comparable: bool = False  # may its numbers be set beside the paper's?
    epochs: int | None = None  # overrides of the recipe's schedule (None: the recipe's own)
    milestones: tuple[int, ...] | None = None
    lr: float | None = None
    max_steps: int | None = None
    eval_every: int | None = None
    train_flags: tuple[str, ...] = field(default_factory=tuple)

    def expected_config(self) -> dict[str, object]:
        """The config.json fields every run of this preset must have (recipe + overrides; the
        precision ``amp`` too where the recipe fixes it: fp32 for the paper's)."""
        recipe = get_recipe(self.recipe, epochs=self.epochs, milestones=self.milestones, lr=self.lr)
        out: dict[str, object] = recipe.to_dict()
        out.pop("source", None)
        out["recipe"] = out.pop("name")
        out["max_steps"] = self.max_steps
        if recipe.amp_auto == "off":  # `--amp auto` is fp32 on every device for this recipe
            out["amp"] = "off"
        return out


# Fields a run's config.json must carry and match; the other recipe fields are compared when
# present, or, when the run predates them, by their legacy value (what such a run did).
REQUIRED_CONFIG = ("model", "seed", "recipe", "epochs", "iterations", "milestones", "max_steps")


def declared_amp(config: Mapping[str, object]) -> bool:
    """Whether the run's precision was asked for explicitly (``--amp bf16``, not ``auto``): a
    declared deviation, listed as such, not a mismatch."""
    asked = config.get("amp_requested")
    return asked not in (None, "auto") and asked == config.get("amp")


def config_mismatch(
    config: Mapping[str, object], preset: Preset, model: str, seed: int
) -> list[str]:
    """How an existing run's config.json differs from what this preset trains for model/seed."""
    from repro.run_config import LEGACY_VALUES

    want = {"model": model, "seed": seed, **preset.expected_config()}
    # Sec. 4.2 trains the CIFAR ResNets with option A (identity, zero-padded); plain nets have no
    # shortcut. Compared when the config records it (runs written since it does).
    want["shortcut"] = "A" if model.startswith("resnet") else None
    out = []
    for key, value in want.items():
        if key == "amp" and declared_amp(config):
            continue
        if key == "warmup_bound" and config.get("warmup_active") is False:
            continue  # no warm-up for this net (depth < 110): its bound changed nothing
        if key in config:
            got, note = config[key], ""
        elif key in LEGACY_VALUES and "imported" not in config:  # an import's gap is unknown
            got, note = LEGACY_VALUES[key], " (not recorded: the run predates the field)"
        else:
            if key in REQUIRED_CONFIG:
                out.append(f"config has no {key!r}")
            continue
        if got != value:
            out.append(f"config {key}={got!r}{note}, preset {preset.name} wants {value!r}")
    return out


# --- mini schedule, calibrated on the real 5,085-image subset (evidence: baselines/mini_calibration.json)
# 12 epochs (480 iterations at batch 128), lr /10 at epochs 6 and 9 (the paper's 50% / 75% points).
# Base lr 0.05 instead of 0.1: at 0.1, ResNet-56 diverged within 5 steps and stayed at chance
# (loss ln 10) in 3 of 3 seeds; 0.05 trains, and is used for all four nets alike.
MINI_EPOCHS = 12
MINI_MILESTONES = (6, 9)
MINI_LR = 0.05
# ---------------------------------------------------------------------------------------------

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        recipe="paper",
        description=(
            "the paper's recipe (Sec. 4.2): all 50k images, 64k iterations, lr /10 at 32k, 48k, "
            "BN over 64 images (two GPUs), per-pixel mean, fp32"
        ),
        needs_full_data=True,
        needs_cuda=True,
        comparable=True,
    ),
    "paper-val": Preset(
        name="paper-val",
        recipe="paper-val",
        description=(
            "the paper's recipe on the 45k/5k train/val split its schedule was determined on "
            "(best.pt chosen on the 5k)"
        ),
        needs_full_data=True,
        needs_cuda=True,
        comparable=True,
    ),
    "common": Preset(
        name="common",
        recipe="common",
        description="the seed projects' recipe: 200 epochs on all 50k images, lr /10 at 100, 150",
        needs_full_data=True,
        needs_cuda=True,
        comparable=True,
    ),
    "mini": Preset(
        name="mini",
        recipe="common",
        description=(
            f"MINI-SCALE: the common recipe shortened to {MINI_EPOCHS} epochs at lr {MINI_LR} "
            f"(/10 at {MINI_MILESTONES[0]}, {MINI_MILESTONES[1]}), sized for the "
            "5,085-image subset on CPU"
        ),
        epochs=MINI_EPOCHS,
        milestones=MINI_MILESTONES,
        lr=MINI_LR,
        train_flags=("--channels-last",),
    ),
    "smoke": Preset(
        name="smoke",
        recipe="common",
        description="SMOKE: 3 optimizer steps per model and one evaluation; proves the plumbing",
        max_steps=3,
    ),
}


def with_amp(preset: Preset, amp: str | None) -> Preset:
    """The preset with ``repro train --amp AMP`` for every run (None: unchanged). A precision
    asked for explicitly is recorded by each run (``amp_requested``) as a declared deviation."""
    if amp is None:
        return preset
    return dataclasses.replace(preset, train_flags=(*preset.train_flags, "--amp", amp))


def get_experiment(name: str) -> tuple[str, ...]:
    """The model names of one experiment; ReproError listing the choices otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ReproError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}"
        ) from None


def get_preset(name: str) -> Preset:
    """One preset by name; ReproError listing the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ReproError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


# --- one place for a matrix's settings (issue 25 item 6) ---------------------------------------
# The verdict policy of a preset with no entry in baselines/tolerances.json "presets" (nor one
# given to :func:`register`): completeness only. Without a calibration no claim of Sec. 4.2 can
# be asserted on its numbers, so it is never set beside the paper's.
DEFAULT_POLICY: Mapping[str, Any] = MappingProxyType(
    {
        "checks": ["completeness"],
        "why": "no calibration: not comparable (a preset without a policy in "
        "baselines/tolerances.json is checked for completeness only)",
    }
)
# Policies given in code by :func:`register`; baselines/tolerances.json's entry wins over them.
POLICIES: dict[str, Mapping[str, Any]] = {}


@dataclass(frozen=True)
class Settings:
    """A matrix's settings reachable from one name: the preset, its recipe (with the preset's
    schedule overrides not yet applied: :meth:`Preset.expected_config` applies them) and the
    raw verdict policy that ``repro.claims.policy_for`` validates and builds on."""

    preset: Preset
    recipe: Recipe
    policy: Mapping[str, Any]
    policy_source: str  # "baselines/tolerances.json", "code" or "default"


def settings_for(name: str) -> Settings:
    """The :class:`Settings` of preset ``name``; ReproError listing the presets otherwise. The
    policy is the preset's entry in baselines/tolerances.json, else the one registered in code,
    else :data:`DEFAULT_POLICY`."""
    preset = get_preset(name)
    recipe = get_recipe(preset.recipe)
    tolerances: object = load_baseline("tolerances")
    presets = tolerances.get("presets") if isinstance(tolerances, dict) else None
    if not isinstance(presets, dict):  # never the default policy for a damaged file
        raise ReproError(
            "baselines/tolerances.json has no 'presets' object; restore the file from the "
            "repository (git checkout baselines/)"
        )
    if name in presets:
        return Settings(preset, recipe, presets[name], "baselines/tolerances.json")
    if name in POLICIES:
        return Settings(preset, recipe, POLICIES[name], "code")
    return Settings(preset, recipe, DEFAULT_POLICY, "default")


def register(
    preset: Preset, recipe: Recipe | None = None, policy: Mapping[str, Any] | None = None
) -> Settings:
    """Add a preset, with its own recipe and policy when given: a new recipe is this one call.

    ``recipe`` must be named ``preset.recipe`` (a recipe of that name already registered must
    equal it); without ``policy`` the preset gets :data:`DEFAULT_POLICY` unless
    baselines/tolerances.json has an entry for it. ReproError for a preset name in use."""
    if preset.name in PRESETS:
        raise ReproError(f"preset {preset.name!r} already exists; pick another name")
    if recipe is not None:
        if recipe.name != preset.recipe:
            raise ReproError(
                f"preset {preset.name!r} names recipe {preset.recipe!r}, not {recipe.name!r}"
            )
        validate_recipe(recipe)
        if RECIPES.setdefault(recipe.name, recipe) != recipe:
            raise ReproError(f"recipe {recipe.name!r} already exists with other values")
    get_recipe(preset.recipe)  # unknown recipe or invalid values: one clear error, nothing added
    PRESETS[preset.name] = preset
    if policy is not None:
        POLICIES[preset.name] = MappingProxyType(dict(policy))
    return settings_for(preset.name)
