"""One policy per report (issue 22 item 7): built once, frozen, handed to every check and
section; the checks use the policy they are given."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import pytest
from synthetic_runs import write_run

import repro.baselines
import repro.report.report
from repro import claims
from repro.claims import PASS, SKIP, Policy, check_degradation, check_tolerance, policy_for
from repro.report.report import write_report
from repro.store import load_matrix


def test_a_policy_is_frozen_and_holds_the_claims_of_each_check() -> None:
    policy = policy_for("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.target = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.claims["x"] = ()  # type: ignore[index]
    assert policy.defining(claims.FIG6, "degradation") == ["degradation_train"]
    assert policy.defining(claims.FIG6, "residual") == ["residual_cure_train"]
    assert {c["check"] for c in policy.of_check(claims.FIG7, "layer_response")} == {
        "layer_response"
    }
    assert policy.calibration is not None and policy.target == 0.95


def test_one_report_builds_its_policy_calibration_and_claims_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(tmp_path / "run", seeds=2)
    counts: collections.Counter[str] = collections.Counter()
    read = repro.baselines.read_json

    def counted_read(path):
        counts[f"load_baseline:{Path(path).stem}"] += 1
        counts["load_baseline"] += 1
        return read(path)

    monkeypatch.setattr(repro.baselines, "read_json", counted_read)
    for name in ("policy_for", "preset_policy", "calibration_for"):
        real = getattr(claims, name)
        monkeypatch.setattr(
            claims, name, lambda *a, _r=real, _n=name, **k: counts.update([_n]) or _r(*a, **k)
        )
    monkeypatch.setattr(repro.report.report, "policy_for", claims.policy_for)  # counted
    write_report(run, tmp_path / "rep")
    # before issue 22: preset_policy 17, calibration_for 6, load_baseline 33 for this report
    assert counts["policy_for"] == counts["preset_policy"] == counts["calibration_for"] == 1
    assert counts["load_baseline:tolerances"] == 1
    assert counts["load_baseline"] <= 8, counts


def test_every_check_uses_the_policy_it_is_handed(tmp_path: Path) -> None:
    matrix = load_matrix(write_run(tmp_path / "run", preset="paper"))
    policy = policy_for("paper")
    assert check_tolerance(matrix, policy).status == PASS
    without = dataclasses.replace(policy, checks=("completeness",), why="handed in")
    for check in (check_degradation, check_tolerance):
        v = check(matrix, without)
        assert v.status == SKIP and "handed in" in v.reason
    assert isinstance(without, Policy)
