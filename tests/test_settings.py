"""One place for a matrix's settings (issue 25 item 6): ``settings_for(name)`` gives a preset,
its recipe and its verdict policy; a new recipe is one ``register`` entry (tests/toy_settings.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import run_repro
from toy_settings import register_toy

from repro import experiments
from repro.baselines import load_baseline
from repro.calibration import calibration_for
from repro.claims import policy_for
from repro.errors import ReproError
from repro.experiments import DEFAULT_POLICY, PRESETS, Preset, get_preset, register, settings_for
from repro.recipes import RECIPES, Recipe, get_recipe
from repro.reproduce import runner

TESTS = Path(__file__).resolve().parent
EXISTING = ("paper", "paper-val", "common", "mini", "smoke")


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo every registration of the test (the registries are module-level dicts)."""
    presets, recipes, policies = dict(PRESETS), dict(RECIPES), dict(experiments.POLICIES)
    yield
    PRESETS.clear()
    PRESETS.update(presets)
    RECIPES.clear()
    RECIPES.update(recipes)
    experiments.POLICIES.clear()
    experiments.POLICIES.update(policies)


@pytest.mark.parametrize("name", EXISTING)
def test_existing_presets_keep_their_preset_recipe_and_policy(name: str) -> None:
    settings = settings_for(name)
    assert settings.preset is get_preset(name) is PRESETS[name]
    assert settings.recipe == get_recipe(PRESETS[name].recipe) == RECIPES[PRESETS[name].recipe]
    raw = load_baseline("tolerances")["presets"][name]  # where the policy was read before
    assert settings.policy == raw and settings.policy_source == "baselines/tolerances.json"
    policy = policy_for(name)
    assert policy.checks == tuple(raw["checks"])
    assert policy.why == raw.get("why", "")
    assert policy.declared == tuple(raw.get("declared_deviations", []))
    if "calibration" in raw:
        assert policy.calibration == calibration_for(name, raw["calibration"])
        assert policy.target == raw["pass_probability"]
    else:
        assert policy.calibration is None and policy.target == 1.0


def test_a_bad_registration_is_one_clear_error_and_adds_nothing(registry: None) -> None:
    toy = Preset(name="toy2", recipe="toy2", description="x")
    with pytest.raises(ReproError, match="already exists"):
        register(Preset(name="smoke", recipe="common", description="x"))
    with pytest.raises(ReproError, match="names recipe 'toy2', not 'other'"):
        register(toy, Recipe(name="other", iterations=1))
    with pytest.raises(ReproError, match="exactly one of epochs and iterations"):
        register(toy, Recipe(name="toy2"))
    with pytest.raises(ReproError, match="unknown recipe 'toy2'"):
        register(toy)
    assert "toy2" not in PRESETS and "toy2" not in RECIPES


TRAINER = """
import sys
sys.path.insert(0, {tests!r})
from toy_settings import register_toy
register_toy()
from repro.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_toy_recipe_is_one_entry_and_gets_the_default_policy(registry: None) -> None:
    settings = register_toy()
    assert settings.policy == DEFAULT_POLICY and settings.policy_source == "default"
    assert settings.recipe == RECIPES["toy"] and policy_for("toy").checks == ("completeness",)
    assert settings.preset.expected_config()["iterations"] == 1


@pytest.mark.slow  # 4 one-step trainings in subprocesses: about a minute on 2 cores
def test_a_toy_recipe_trains_and_gets_a_report_with_the_default_policy(
    registry: None, synthetic_cifar: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    register_toy()
    real = runner.train_command

    def command(*args, **kwargs) -> list[str]:  # `python -m repro train ...` knowing the toy
        cmd = real(*args, **kwargs)
        assert cmd[1:3] == ["-m", "repro"]
        return [sys.executable, "-c", TRAINER.format(tests=str(TESTS)), *cmd[3:]]

    monkeypatch.setattr(runner, "train_command", command)
    out, report = tmp_path / "run", tmp_path / "report"
    argv = ["--experiment", "core", "--preset", "toy", "--data-root", str(synthetic_cifar)]
    rc, text, err = run_repro(capsys, "reproduce", *argv, "--out", str(out))
    assert rc == 0, text + err
    rc, text, err = run_repro(capsys, "report", str(out), "--out", str(report))
    assert rc == 0, text + err  # completeness, the one check of the default policy, passes
    markdown = "\n".join(p.read_text() for p in report.rglob("*.md"))
    assert "no calibration: not comparable" in markdown
