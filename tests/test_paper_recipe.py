"""The paper-exact `paper` recipe and preset (He et al. 2016, Sec. 4.2): each choice a documented
`repro train` option, recorded in config.json, restored on resume (the legacy value for a run that
predates it), compared by the preset's completeness check and listed in baselines/he2016_recipe.json
under its config key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trainer_helpers import run_cli, tiny_args

from repro.baselines import load_baseline
from repro.devices import resolve_amp
from repro.experiments import PRESETS, config_mismatch, get_preset
from repro.models import build_model
from repro.recipes import Warmup, build_schedule, get_recipe, lr_at
from repro.run_config import LEGACY_VALUES
from repro.train.components import make_optimizer
from repro.train.config import config_from_run

OLD_RUN = Path(__file__).resolve().parent / "fixtures" / "old_format" / "run"


def test_paper_is_bn_over_64_per_pixel_mean_fp32_decay_on_all_warmup_bounded_on_50k() -> None:
    r = get_recipe("paper")
    assert (r.bn_batch, r.normalize, r.amp_auto) == (64, "per-pixel-mean", "off")
    assert (r.weight_decay_policy, r.warmup_bound) == ("all", "first-milestone")
    assert (r.split, r.val_fraction) == ("train", 0.0)
    c = get_recipe("common")
    assert (c.bn_batch, c.normalize, c.amp_auto, c.weight_decay_policy) == (
        None,
        "per-channel",
        "bf16",
        "all",
    )


def test_the_paper_recipe_trains_in_fp32_on_cuda_unless_bf16_is_asked_for() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # resolve_amp reads the type only
    assert resolve_amp("auto", cuda, cuda_auto=get_recipe("paper").amp_auto) is None
    assert resolve_amp("bf16", cuda, cuda_auto="off") is torch.bfloat16
    assert resolve_amp("auto", cuda, cuda_auto=get_recipe("common").amp_auto) is torch.bfloat16
    assert resolve_amp("auto", cpu, cuda_auto="bf16") is None  # the CPU stays fp32


def _paper_config(model: str = "resnet56", **changes) -> dict:
    config = {**get_preset("paper").expected_config(), "model": model, "seed": 0}
    config.update({"shortcut": "A", "amp_requested": "auto", "warmup_active": False, **changes})
    return config


def test_a_paper_run_in_bf16_it_did_not_ask_for_is_a_named_mismatch() -> None:
    assert config_mismatch(_paper_config(), PRESETS["paper"], "resnet56", 0) == []
    silent = _paper_config(amp="bf16")
    assert config_mismatch(silent, PRESETS["paper"], "resnet56", 0) == [
        "config amp='bf16', preset paper wants 'off'"
    ]


def test_bf16_asked_for_explicitly_is_a_declared_deviation_not_a_mismatch() -> None:
    declared = _paper_config(amp="bf16", amp_requested="bf16")
    assert config_mismatch(declared, PRESETS["paper"], "resnet56", 0) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("bn_batch", None), ("normalize", "per-channel"), ("weight_decay_policy", "weights")],
)
def test_completeness_names_each_paper_option_a_run_departs_from(field: str, value) -> None:
    problems = config_mismatch(_paper_config(**{field: value}), PRESETS["paper"], "resnet56", 0)
    assert problems == [
        f"config {field}={value!r}, preset paper wants {get_preset('paper').expected_config()[field]!r}"
    ]


def test_a_run_that_predates_the_fields_is_judged_by_what_it_did() -> None:
    old = _paper_config()
    for field in LEGACY_VALUES:
        old.pop(field)
    problems = config_mismatch(old, PRESETS["paper"], "resnet56", 0)
    assert (
        "config bn_batch=None (not recorded: the run predates the field), preset paper wants 64"
        in (problems)
    )
    assert any(p.startswith("config normalize='per-channel' (not recorded") for p in problems)
    common = {**get_preset("common").expected_config(), "model": "resnet20", "seed": 0}
    common.update(shortcut="A", warmup_active=False)
    for field in LEGACY_VALUES:
        common.pop(field)
    assert config_mismatch(common, PRESETS["common"], "resnet20", 0) == []


def test_an_old_run_resumes_with_the_old_behaviour_not_the_new_defaults(tmp_path: Path) -> None:
    config = config_from_run(OLD_RUN)
    assert config.recipe == "paper"
    recipe = get_recipe(config.recipe, **config.overrides)
    assert (recipe.bn_batch, recipe.normalize, recipe.weight_decay_policy) == (
        None,
        "per-channel",
        "all",
    )
    assert (recipe.warmup_bound, recipe.amp_auto, recipe.split) == ("none", "bf16", "train45k")
    assert config.amp_requested is None  # not recorded then: not a declared choice


def test_a_paper_run_records_every_option_and_what_amp_was_asked(
    synthetic_cifar: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert run_cli(tiny_args(synthetic_cifar, out, "--max-steps", "2")) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["bn_batch"], config["normalize"], config["amp"]) == (64, "per-pixel-mean", "off")
    assert (config["amp_requested"], config["amp_auto"]) == ("auto", "off")
    assert (config["weight_decay_policy"], config["warmup_bound"]) == ("all", "first-milestone")
    assert config["warmup_limit_iteration"] == 18
    # fp32 as declared: TF32 off for matmuls and convolutions, and recorded (issue 22)
    assert (config["tf32_matmul"], config["tf32_cudnn"]) == (False, False)
    assert run_cli(["train", "--out", str(out), "--resume", "--max-steps", "4"]) == 0
    resumed = json.loads((out / "config.json").read_text())
    assert resumed["amp_requested"] == "auto" and resumed["bn_batch"] == 64


# ---------------------------------------------------------------- warm-up


def test_a_warmup_whose_error_never_drops_below_80_ends_at_the_first_milestone() -> None:
    schedule = build_schedule(get_recipe("paper"), 50_000, depth=110)
    assert schedule.warmup_limit == 32_000
    warmup = Warmup(schedule)
    for it in range(50, 32_000, 50):
        assert not warmup.update(it, 90.0)  # never below 80 %
    assert lr_at(schedule, 31_999, warmup.active) == 0.01
    assert lr_at(schedule, 32_000, warmup.active) == pytest.approx(0.1 * 0.1)  # 0.1 gamma
    assert warmup.update(32_000, 90.0) and warmup.ended_at == 32_000
    assert lr_at(schedule, 48_000, warmup.active) == pytest.approx(0.001)  # not 0.01
    legacy = build_schedule(get_recipe("paper", warmup_bound="none"), 50_000, depth=110)
    assert legacy.warmup_limit is None and lr_at(legacy, 48_000, True) == 0.01


def test_a_run_stuck_above_the_threshold_gets_the_schedules_lr_after_the_first_milestone(
    synthetic_cifar: Path, tmp_path: Path
) -> None:
    """Training error can never be below 0 %: the threshold never ends this warm-up. A warm-up lr
    of 0.005 tells it apart from 0.1 x gamma = 0.01 after the first milestone (18)."""
    stuck = ["--warmup", "on", "--warmup-until-error", "0", "--warmup-lr", "0.005"]
    lrs = {}
    for bound in ("first-milestone", "none"):
        out = tmp_path / bound
        args = tiny_args(synthetic_cifar, out, *stuck, "--warmup-check-every", "6")
        assert run_cli([*args, "--warmup-bound", bound]) == 0
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        lrs[bound] = {r["iteration"]: r["lr"] for r in rows}
    assert lrs["first-milestone"][18] == 0.005  # step 17: still warming up
    assert lrs["first-milestone"][24] == pytest.approx(0.01)  # 0.1 x gamma, not 0.005
    assert lrs["first-milestone"][30] == pytest.approx(0.001)
    assert lrs["none"][30] == 0.005  # the old, unbounded warm-up


# ---------------------------------------------------------------- weight decay policy


def _zero_gradient_step(policy: str) -> tuple[torch.nn.Module, list[torch.Tensor], float]:
    recipe = get_recipe("paper", lr=0.5, momentum=0.0, weight_decay_policy=policy)
    net = build_model("resnet_cifar", depth=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    optimizer = make_optimizer(net, recipe, torch.device("cpu"))
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # a zero gradient: only the decay moves anything, by lr * wd * w
    return net, before, 1 - 0.5 * recipe.weight_decay


def test_weights_policy_decays_conv_and_fc_weights_and_leaves_bn_and_biases_alone() -> None:
    net, before, shrink = _zero_gradient_step("weights")
    for (name, p), b in zip(net.named_parameters(), before):
        module = net.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and name.endswith("weight"):
            torch.testing.assert_close(p.detach(), b * shrink)
        else:
            assert torch.equal(p.detach(), b), name  # BN gamma/beta, fc bias: untouched


def test_all_policy_decays_every_parameter_bn_included() -> None:
    net, before, shrink = _zero_gradient_step("all")
    for p, b in zip(net.parameters(), before):
        torch.testing.assert_close(p.detach(), b * shrink)


@pytest.mark.parametrize("name", ["paper", "paper-val", "common"])
def test_paper_and_common_decay_every_parameter_as_the_papers_one_sentence_says(name: str) -> None:
    assert get_recipe(name).weight_decay_policy == "all"


def test_unknown_weight_decay_policy_is_one_line(synthetic_cifar: Path, tmp_path: Path, capsys):
    assert run_cli(tiny_args(synthetic_cifar, tmp_path / "r", "--weight-decay-policy", "bn")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--weight-decay-policy 'bn'" in err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- the recipe record


def test_the_recipe_record_quotes_the_split_sentence_in_full() -> None:
    record = load_baseline("he2016_recipe")
    sentence = (
        "We start with a learning rate of 0.1, divide it by 10 at 32k and 48k iterations, and "
        "terminate training at 64k iterations, which is determined on a 45k/5k train/val split."
    )
    assert record["split_sentence"] == sentence
    assert sentence in record["fields"]["iterations"]["why"]


def test_every_config_field_of_the_recipe_record_is_what_the_paper_preset_trains() -> None:
    fields = load_baseline("he2016_recipe")["fields"]
    want = get_preset("paper").expected_config()
    checked = 0
    for key, entry in fields.items():
        if entry.get("config", True) is False or key in ("total_iterations", "shortcut"):
            continue
        assert entry["value"] == want[key], key
        assert entry["why"], key
        checked += 1
    assert checked >= 19
    assert {k for k, e in fields.items() if e.get("config") is False} == {
        "data",
        "augmentation",
        "testing",
    }
