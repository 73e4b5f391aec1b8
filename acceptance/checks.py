"""The acceptance checks, importable as plain functions; the one implementation lives in
:mod:`repro.report.verdicts` (shared with `repro report`)."""

from repro.report.verdicts import (
    CHECKS,
    FAIL,
    PASS,
    SKIP,
    RunSet,
    Verdict,
    all_verdicts,
    check_completeness,
    check_degradation,
    check_layer_response,
    check_residual,
    check_tolerance,
    load_runset,
)

__all__ = [
    "CHECKS",
    "FAIL",
    "PASS",
    "SKIP",
    "RunSet",
    "Verdict",
    "all_verdicts",
    "check_completeness",
    "check_degradation",
    "check_layer_response",
    "check_residual",
    "check_tolerance",
    "load_runset",
]
