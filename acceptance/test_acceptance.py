"""Acceptance: a finished run reproduces the paper's claims (He et al. 2016, Sec. 4.2, Fig. 6)."""

from __future__ import annotations

import pytest

from repro.claims import (
    SKIP,
    Verdict,
    check_completeness,
    check_degradation,
    check_layer_response,
    check_residual,
    check_tolerance,
)


def assert_verdict(v: Verdict) -> None:
    if v.status == SKIP:
        pytest.skip(f"{v.name}: {v.reason}")
    if not v.passed:
        pytest.fail(f"\n{v}", pytrace=False)  # expected vs measured, without the traceback


def test_every_model_finished_its_schedule_with_finite_metrics(matrix) -> None:
    assert_verdict(check_completeness(matrix))


def test_plain56_has_higher_train_and_test_error_than_plain20(matrix) -> None:
    assert_verdict(check_degradation(matrix))


def test_resnet56_beats_plain56_and_resnet20(matrix) -> None:
    assert_verdict(check_residual(matrix))


def test_final_test_error_within_tolerance_of_published(matrix) -> None:
    assert_verdict(check_tolerance(matrix))


def test_residual_responses_are_smaller_than_plain_and_shrink_with_depth(matrix) -> None:
    assert_verdict(check_layer_response(matrix))
