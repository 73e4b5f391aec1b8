"""A verdict is what its defining claims say (issue 22 item 1): a check whose defining claim is
missing from the claims data, or not asserted, is PARTIAL or NOT ASSESSED, never PASS."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest
from synthetic_runs import FAITHFUL, write_run

from repro.claims import (
    FAIL,
    FIG6,
    NOT_ASSESSED,
    PARTIAL,
    PASS,
    check_degradation,
    check_residual,
    exit_status,
    policy_for,
)
from repro.errors import ReproError
from repro.store import load_matrix


def _without_defining(check: str):
    """The paper policy with the claims data's ``defines`` flags of ``check`` removed."""
    policy = policy_for("paper")
    fig6 = tuple(
        {k: v for k, v in c.items() if k != "defines"} if c["check"] == check else c
        for c in policy.claims[FIG6]
    )
    return dataclasses.replace(policy, claims=MappingProxyType({**policy.claims, FIG6: fig6}))


def test_a_faithful_paper_run_passes_degradation_with_its_defining_claim(tmp_path: Path) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper"))
    assert check_degradation(matrix).status == PASS


def test_a_check_whose_data_names_no_defining_claim_is_partial_never_pass(tmp_path: Path) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper"))
    v = check_degradation(matrix, _without_defining("degradation"))
    assert v.status == PARTIAL and "names no claim that defines this check" in v.reason
    assert exit_status([v]) != 0


def test_a_check_whose_defining_claim_is_not_asserted_is_partial(tmp_path: Path) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper"))
    policy = policy_for("paper")
    assert policy.calibration is not None
    refs = {
        key: ref for key, ref in policy.calibration.references.items() if key[1] != "train_error"
    }  # no training-error reference: the defining claims cannot be asserted
    cal = dataclasses.replace(policy.calibration, references=refs)
    v = check_residual(matrix, dataclasses.replace(policy, calibration=cal))
    assert v.status == PARTIAL and "residual_cure_train" in v.reason


def test_a_check_with_no_claim_asserted_is_not_assessed(tmp_path: Path) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper"))
    policy = policy_for("paper")
    v = check_degradation(matrix, dataclasses.replace(policy, calibration=None))
    assert v.status == NOT_ASSESSED


def test_overfitting_is_not_degradation(tmp_path: Path) -> None:
    """plain-56 trains *better* than plain-20 (test errors unchanged): never PASS."""
    finals = {"plain56": [(1.0, FAITHFUL["plain56"][1])]}
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper", finals=finals))
    assert check_degradation(matrix).status != PASS


# --- the claims of Table 6's text (issue 22 item 6) -------------------------------------------


def test_resnet110_has_fewer_parameters_than_fitnet_and_highway() -> None:
    from repro.models.complexity import params_claims

    (claim,) = params_claims()
    assert claim.claim == "resnet110_fewer_params" and claim.holds
    assert claim.params == 1_727_962
    assert [m for _, m in claim.others] == [2.5, 2.3]


def test_a_doctored_table6_fails_the_parameter_claim_and_repro_params(monkeypatch, capsys) -> None:
    import json

    import repro.cli.params as params_cli
    import repro.models.complexity as complexity
    from repro.baselines import load_baseline
    from repro.cli import main

    doc = json.loads(json.dumps(load_baseline("he2016_table6")))
    doc["other_methods"]["fitnet"]["params_m"] = 1.5  # a FitNet smaller than our ResNet-110
    (claim,) = complexity.params_claims(doc)
    assert not claim.holds
    monkeypatch.setattr(complexity, "load_baseline", lambda name: doc)
    fast = complexity.Complexity("resnet110", claim.params, 1.7, 0, None, True, None)
    monkeypatch.setattr(params_cli, "complexity", lambda name, figures: fast)  # no MAC count
    assert main(["params", "resnet110"]) == 1
    out = capsys.readouterr().out
    assert "resnet110_fewer_params" in out and "FAILS" in out
    del doc["other_methods"]["fitnet"]
    with pytest.raises(ReproError, match="he2016_table6.json"):
        complexity.params_claims(doc)


def test_similar_training_error_and_the_unrun_lr_claim_are_shown_never_asserted(
    tmp_path: Path,
) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", experiment="table6", preset="paper"))
    v = check_residual(matrix)
    rows = {r[0]: r for r in v.rows}
    similar = rows["resnet110 ≈ resnet1202 (train error)"]
    assert similar[2:4] == (FAITHFUL["resnet110"][0], FAITHFUL["resnet1202"][0])
    assert similar[-1].startswith("shown: a similarity")
    unrun = next(r for name, r in rows.items() if "lr 0.1 from the start" in name)
    assert unrun[-1] == "shown: needs a run this preset does not train"
    shown = {o.claim: o for o in v.outcomes}
    for cid in ("resnet110_1202_similar_train", "resnet110_lr01_from_start"):
        assert not shown[cid].asserted and shown[cid].holds is None
    assert v.status != FAIL
