"""A verdict is what its defining claims say (issue 22 item 1): a check whose defining claim is
missing from the claims data, or not asserted, is PARTIAL or NOT ASSESSED, never PASS."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

from synthetic_runs import FAITHFUL, write_run

from repro.claims import (
    FIG6,
    NOT_ASSESSED,
    PARTIAL,
    PASS,
    check_degradation,
    check_residual,
    exit_status,
    policy_for,
)
from repro.train.rundir import load_matrix


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
