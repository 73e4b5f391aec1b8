"""How far the verdicts can be trusted: the published reference runs, the tolerance model derived
from them (repro/calibration.py), and what each claim's verdict can and cannot detect."""

from __future__ import annotations

from typing import Any

from repro.baselines import load_baseline
from repro.calibration import (
    POWER,
    REFERENCE_RUNS,
    SEEDS_SHOWN,
    WORSE_PP,
    band_z,
    records_results,
)
from repro.claims import operating_characteristics, preset_calibration, preset_policy
from repro.experiments import get_experiment
from repro.tables import markdown_table


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _value(r: Any) -> str:
    """'6.61 ± 0.16 (mean of 5)', '7.56 (6 runs listed)', '8.75'."""
    text = f"{r.value:.2f}"
    if r.std is not None:
        text += f" ± {r.std:.2f}"
    if r.aggregate == "values":
        return f"{text} (mean of {r.k} listed)"
    return text if r.aggregate == "single" else f"{text} ({r.aggregate.replace('_', ' ')}, k={r.k})"


def references_section() -> list[str]:
    """Every published number for the paper's CIFAR nets, one row per source and net."""
    doc = load_baseline(REFERENCE_RUNS)
    urls = {rec["id"]: rec["url"] for rec in doc["records"]}
    frameworks = {rec["id"]: rec.get("framework", "-") for rec in doc["records"]}
    rows = [
        (
            f"[{r.source}]({urls[r.source]})",
            frameworks[r.source],
            r.recipe,
            r.data,
            r.model,
            r.selection.replace("_", "-"),
            _value(r),
        )
        for r in records_results(doc)
        if r.metric == "test_error"
    ]
    head = ("source", "framework", "recipe", "data", "net", "selection", "test error %")
    intro = (
        f"Every published test error for these nets that the project found "
        f"(`baselines/{REFERENCE_RUNS}.json`, each record with its quoted sentence)."
    )
    return ["## Reference runs", "", intro, "", markdown_table(head, rows), ""]


def tolerance_model_section(preset: str, experiment: str) -> list[str]:
    """How the expected values and bands of this preset were derived, and the bands at K=1, 5."""
    cal, target = preset_calibration(preset)
    if cal is None:
        return ["## Tolerance model", "", f"Preset `{preset}` asserts no calibrated claim.", ""]
    md = ["## Tolerance model", "", f"Calibration: {cal.basis}.", ""]
    md += [f"- {line}" for line in cal.derivation] + [""]
    nets = [m for m in get_experiment(experiment) if cal.reference(m, "test_error")]
    if "tolerance" not in preset_policy(preset)["checks"] or not nets:
        return md
    z = band_z(target, len(nets))
    declared = preset_policy(preset).get("declared_deviations", [])
    rows = []
    for model in nets:
        ref = cal.references[(model, "test_error")]
        bands = [f"± {z * ref.sd(k, len(declared)):.2f}" for k in SEEDS_SHOWN]
        rows.append(
            (model, f"{ref.mean:.2f}", f"{ref.sigma_run:.2f}", f"{ref.sigma_impl:.2f}", *bands)
        )
    head = ("net", "expected %", "sigma_run", "sigma_impl", *(f"band K={k}" for k in SEEDS_SHOWN))
    md += [
        f"Bands for the final test error (z = {z:.2f}, so that a faithful run passes all "
        f"{len(nets)} nets together with P = {target}); each declared deviation adds one "
        "sigma_impl² to the variance"
        + (f" (declared by this preset: {'; '.join(declared)})" if declared else "")
        + ":",
        "",
        markdown_table(head, rows),
        "",
    ]
    return md


def characteristics_section(preset: str, experiment: str) -> list[str]:
    """Each claim: asserted or why not, P(pass | faithful) and P(fail | 1 pp worse)."""
    rows = []
    for check, ch in operating_characteristics(preset, experiment):
        passes = [_p(p) for p in ch.pass_faithful] or ["-"] * len(SEEDS_SHOWN)
        worse = [_p(p) for p in ch.fail_worse] or ["-"] * len(SEEDS_SHOWN)
        shifts = [_p(x) for x in ch.detectable] or ["-"] * len(SEEDS_SHOWN)
        status = "asserted" if ch.asserted else f"not asserted: {ch.reason}"
        rows.append((check, ch.label, *passes, *worse, *shifts, status))
    head = (
        "check",
        "claim",
        *(f"P(pass), faithful, K={k}" for k in SEEDS_SHOWN),
        *(f"P(fail), {WORSE_PP:g} pp worse, K={k}" for k in SEEDS_SHOWN),
        *(f"pp worse failed with {POWER:.0%} power, K={k}" for k in SEEDS_SHOWN),
        "status",
    )
    intro = (
        "What each verdict can detect at this preset: the probability that a faithful run "
        "passes, and that a run whose lower (better) net is 1 pp worse fails, with K seeds. "
        "A claim is asserted only where a faithful run passes with the preset's pass "
        "probability at every K shown; '-' where no reference makes it computable."
    )
    return ["## Operating characteristics", "", intro, "", markdown_table(head, rows), ""]


def trust_sections(preset: str, experiment: str) -> list[str]:
    """The three sections above, for the report."""
    return (
        characteristics_section(preset, experiment)
        + tolerance_model_section(preset, experiment)
        + references_section()
    )
