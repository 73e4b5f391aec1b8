"""config.json as one typed record (repro.run_config, issue 25 item 5): every key the trainer
writes is a field, files written by the old code (tests/fixtures/old_format, commit e6e8522) load
with the documented defaults for the keys they lack and write back unchanged, unknown keys are
kept, and a value of the wrong type is one line naming the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from repro.errors import ReproError
from repro.recipes import RECIPE_FIELDS
from repro.run_config import (
    LEGACY_VALUES,
    METRIC_KEYS,
    RUN_CONFIG_KEYS,
    TRAINER_NEVER_WRITES,
    EvalRecord,
    RunConfig,
    parse_run_config,
    read_run_config,
    run_config_problems,
    write_run_config,
)
from repro.store import load_run
from repro.train import ddp
from repro.train.config import TrainConfig, config_from_run
from repro.train.trainer import Trainer

OLD = Path(__file__).resolve().parent / "fixtures" / "old_format"
OLD_CONFIGS = sorted(p.parent for p in OLD.rglob("config.json"))


@pytest.mark.parametrize("run", OLD_CONFIGS, ids=lambda p: str(p.relative_to(OLD)))
def test_every_old_config_loads_and_writes_back_unchanged(run: Path, tmp_path: Path) -> None:
    original = json.loads((run / "config.json").read_text())
    config = read_run_config(run)
    assert config.model == original["model"] and config.seed == original["seed"]
    assert config.extra == {}  # the old code wrote no key this record does not know
    # the keys added since e6e8522 are absent there: remembered as such, with their defaults
    assert {"shortcut", "normalize", "bn_batch", "amp_requested", "placement"} <= config.absent
    assert config.normalize == LEGACY_VALUES["normalize"] == "per-channel"
    assert config.warmup_bound == "none" and config.weight_decay_policy == "all"
    assert config.shortcut is None and config.tf32_matmul is None
    write_run_config(tmp_path, config)
    again = json.loads((tmp_path / "config.json").read_text())
    assert again == original and list(again) == list(original)  # keys, values and order


def test_the_old_run_resumes_with_its_switches_asked_as_words() -> None:
    """config.json records the fast path resolved (true/false); a resume asks for it again as
    on/off: the request stays a word, never a bool (TrainConfig.channels_last: str)."""
    config = config_from_run(OLD / "run")
    assert (config.channels_last, config.compile) == ("on", "off")
    assert config.device == "cpu" and config.max_steps == 12 and config.resume
    # legacy values of the recipe fields the run predates, never the recipe's new defaults
    assert config.overrides["normalize"] == "per-channel" and config.overrides["bn_batch"] == "off"


def test_an_unknown_key_is_kept_in_order_and_written_back(tmp_path: Path) -> None:
    obj = {"model": "resnet20", "future_key": {"a": 1}, "seed": 3, "another": None}
    config = parse_run_config(obj)
    assert config.extra == {"future_key": {"a": 1}, "another": None}
    assert config.recorded("future_key") and not config.recorded("normalize")
    write_run_config(tmp_path, config)
    assert json.loads((tmp_path / "config.json").read_text()) == obj


def test_an_import_like_sparse_config_keeps_only_what_it_has() -> None:
    obj = {"model": "resnet56", "seed": 0, "lr": 0.1, "total_iterations": 64000, "imported": {}}
    config = parse_run_config(obj)
    assert config.to_dict() == obj and list(config.to_dict()) == list(obj)  # the file's order
    assert config.expected_end() == 64000 and config.imported == {}
    assert config.batch_size is None and not config.recorded("batch_size")
    cut = dataclasses.replace(config, max_steps=10)  # a key the file lacked, now set: written
    assert cut.expected_end() == 10 and cut.recorded("max_steps")
    assert list(cut.to_dict()) == [*obj, "max_steps"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", "zero", "'seed' is str, expected integer"),
        ("seed", True, "'seed' is bool, expected integer"),
        ("channels_last", "auto", "'channels_last' is str, expected bool or null"),
        ("milestones", [32000, "48k"], "milestones: '1' is str, expected integer"),
        ("mean", [0.5, None, 0.5], "mean: '1' is NoneType, expected number"),
        ("model_kwargs", [], "'model_kwargs' is list, expected dict"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_key(key, value, message) -> None:
    obj = {"model": "resnet20", "seed": 0, key: value}
    assert any(message in p for p in run_config_problems(obj))
    with pytest.raises(ReproError, match=message.replace("'", ".")):
        parse_run_config(obj)


def test_a_wrong_config_is_reported_by_the_run_loader_never_raised(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model": "resnet20", "seed": "x"}))
    run = load_run(tmp_path)
    assert run.config is None and run.run_config is None
    assert any("'seed' is str" in p for p in run.problems)


def test_a_folder_without_a_model_is_not_a_run_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(ReproError, match="is not a resnet-repro run config; use a new --out"):
        read_run_config(tmp_path)


def test_every_recipe_field_is_a_key_in_the_recipes_order() -> None:
    keys = [k for k in RUN_CONFIG_KEYS if k in RECIPE_FIELDS]
    assert keys == list(RECIPE_FIELDS)
    assert set(LEGACY_VALUES) <= set(RECIPE_FIELDS)


def test_the_trainer_writes_every_key_of_the_record_and_no_other(synthetic_cifar, tmp_path) -> None:
    config = TrainConfig(
        "resnet_cifar",
        tmp_path / "run",
        model_kwargs={"depth": 8},
        overrides={"batch_size": 16, "iterations": 12, "milestones": (6,)},
        device="cpu",
        data_root=synthetic_cifar,
        quiet=True,
    )
    trainer = Trainer(config, torch.device("cpu"), ddp.DistInfo())
    written = trainer.run_config.to_dict()
    assert list(written) == [k for k in RUN_CONFIG_KEYS if k not in TRAINER_NEVER_WRITES]
    assert parse_run_config(json.loads(json.dumps(written))) == trainer.run_config
    assert isinstance(trainer.run_config, RunConfig)


def test_an_evaluation_record_is_a_metrics_line_in_its_order() -> None:
    record = EvalRecord(0.5, 3, 0.1, 2.3, 90.0, None, None, 2.2, 88.0, 1.5, 100.0)
    assert tuple(record.to_dict()) == METRIC_KEYS
    assert record.error("test_error") == 88.0
    with pytest.raises(ValueError):
        record.error("val_error")
