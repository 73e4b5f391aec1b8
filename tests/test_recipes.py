"""The recipes and the learning-rate schedule (He et al. 2016, Sec. 4.2) as pure functions."""

from __future__ import annotations

import dataclasses

import pytest

from repro.errors import ReproError
from repro.recipes import (
    RECIPES,
    Warmup,
    build_schedule,
    get_recipe,
    iterations_per_epoch,
    lr_at,
)


def test_paper_recipe_is_the_papers_hyperparameters():
    r = get_recipe("paper")
    assert (r.batch_size, r.lr, r.momentum, r.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert r.iterations == 64_000 and r.epochs is None
    assert r.milestones == (32_000, 48_000) and r.milestone_unit == "iteration"
    # the schedule was "determined on a 45k/5k train/val split"; the reported nets train on 50k
    assert (r.split, r.val_fraction) == ("train", 0.0)
    v = get_recipe("paper-val")
    assert (v.split, v.val_fraction) == ("train45k", 0.1)
    assert dataclasses.replace(v, name="paper", split="train", val_fraction=0.0, source="") == (
        dataclasses.replace(r, source="")
    )


def test_paper_schedule_drops_lr_tenfold_at_32k_and_48k_and_stops_at_64k():
    s = build_schedule(get_recipe("paper"), 45_000, depth=56)
    assert s.total_iterations == 64_000
    assert lr_at(s, 0) == pytest.approx(0.1)
    assert lr_at(s, 31_999) == pytest.approx(0.1)
    assert lr_at(s, 32_000) == pytest.approx(0.01)
    assert lr_at(s, 47_999) == pytest.approx(0.01)
    assert lr_at(s, 48_000) == pytest.approx(0.001)
    assert lr_at(s, 63_999) == pytest.approx(0.001)


def test_common_recipe_converts_epochs_to_391_iterations_per_epoch_on_50k_images():
    r = get_recipe("common")
    assert iterations_per_epoch(50_000, 128) == 391
    s = build_schedule(r, 50_000, depth=20)
    assert s.iterations_per_epoch == 391
    assert s.total_iterations == 200 * 391
    assert s.milestones == (100 * 391, 150 * 391)
    assert lr_at(s, 100 * 391 - 1) == pytest.approx(0.1)
    assert lr_at(s, 100 * 391) == pytest.approx(0.01)
    assert lr_at(s, 150 * 391) == pytest.approx(0.001)
    assert r.val_fraction == 0 and r.split == "train"


def test_resnet18_cifar_recipe_is_steplr_30_with_patience_20():
    r = get_recipe("resnet18-cifar")
    assert r.weight_decay == 5e-4 and r.early_stopping_patience == 20 and r.val_fraction == 0.2
    s = build_schedule(r, 40_000, depth=18)
    ipe = iterations_per_epoch(40_000, 128)
    assert s.milestones == tuple(e * ipe for e in (30, 60, 90, 120, 150, 180))
    assert lr_at(s, 30 * ipe) == pytest.approx(0.01)
    assert lr_at(s, 60 * ipe) == pytest.approx(0.001)


@pytest.mark.parametrize("recipe", ["paper", "common"])
@pytest.mark.parametrize(("depth", "warm"), [(20, False), (56, False), (110, True), (1202, True)])
def test_warmup_of_0_01_applies_to_depth_110_and_deeper_only(recipe, depth, warm):
    s = build_schedule(get_recipe(recipe), 50_000, depth=depth)
    assert (s.warmup_lr is not None) is warm
    assert lr_at(s, 0, in_warmup=True) == pytest.approx(0.01 if warm else 0.1)
    assert lr_at(s, 0, in_warmup=False) == pytest.approx(0.1)


def test_warmup_can_be_forced_on_or_off():
    assert build_schedule(get_recipe("paper", warmup="on"), 45_000, 20).warmup_lr == 0.01
    assert build_schedule(get_recipe("paper", warmup="off"), 45_000, 110).warmup_lr is None


def test_warmup_ends_at_the_first_check_with_training_error_below_80_percent():
    w = Warmup(build_schedule(get_recipe("paper"), 45_000, depth=110))
    assert w.active
    assert not w.due(49) and w.due(50) and w.due(100)
    assert not w.update(50, 91.0) and w.active
    assert not w.update(100, 80.0) and w.active  # "below 80%": 80.0 is not below
    assert w.update(150, 79.9)
    assert not w.active and w.ended_at == 150 and not w.due(200)
    restored = Warmup(build_schedule(get_recipe("paper"), 45_000, depth=110))
    restored.load_state_dict(w.state_dict())
    assert (restored.active, restored.ended_at) == (False, 150)


def test_warmup_is_inactive_for_shallow_nets():
    w = Warmup(build_schedule(get_recipe("paper"), 45_000, depth=56))
    assert not w.active and not w.due(50)


def test_milestones_given_without_a_unit_count_in_the_unit_of_the_run_length():
    assert get_recipe("paper", epochs=12, milestones=[6, 9]).milestone_unit == "epoch"
    assert get_recipe("common", iterations=90, milestones=[30, 60]).milestone_unit == "iteration"
    assert get_recipe("common", milestones=[50, 75]).milestone_unit == "epoch"
    assert get_recipe("paper", milestones=[100], milestone_unit="epoch").milestone_unit == "epoch"


def test_overrides_replace_fields_and_epochs_replace_iterations():
    r = get_recipe("paper", epochs=3, milestones=[1, 2], milestone_unit="epoch", lr=0.05)
    assert r.epochs == 3 and r.iterations is None and r.lr == 0.05
    s = build_schedule(r, 1000, depth=20)
    assert s.total_iterations == 3 * 8 and s.milestones == (8, 16)
    assert get_recipe("common", iterations=10).epochs is None
    assert get_recipe("paper", val_fraction=0.2).split == "train80"
    assert get_recipe("paper", val_fraction=0.0).split == "train"
    assert get_recipe("paper", lr=None) == RECIPES["paper"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"milestones": [48_000, 32_000]},
        {"lr": 0.0},
        {"batch_size": 0},
        {"val_fraction": 1.0},
        {"milestone_unit": "week"},
        {"warmup": "sometimes"},
        {"no_such_field": 1},
    ],
)
def test_inconsistent_overrides_raise_one_clear_error(overrides):
    with pytest.raises(ReproError):
        get_recipe("paper", **overrides)


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ReproError, match="paper"):
        get_recipe("fast")
