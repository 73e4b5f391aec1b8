"""How far the verdicts can be trusted: the published reference runs, the tolerance model derived
from them (repro/calibration.py), and what each claim's verdict can and cannot detect."""

from __future__ import annotations

from typing import Any

from repro.baselines import load_baseline
from repro.calibration import (
    MAX_SHIFT,
    POWER,
    REFERENCE_RUNS,
    SEEDS_SHOWN,
    WORSE_PP,
    band_z,
    power_budget,
    records_results,
)
from repro.claims import Policy, operating_characteristics, policy_for
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


def tolerance_model_section(
    preset: str,
    experiment: str,
    seeds: tuple[int, ...] = SEEDS_SHOWN,
    policy: Policy | None = None,
) -> list[str]:
    """How the expected values and bands of this preset were derived, and the bands at each K
    of ``seeds``, with the variance terms that limit what the check detects."""
    policy = policy or policy_for(preset)
    cal, target = policy.calibration, policy.target
    if cal is None:
        return ["## Tolerance model", "", f"Preset `{preset}` asserts no calibrated claim.", ""]
    md = ["## Tolerance model", "", f"Calibration: {cal.basis}.", ""]
    md += [f"- {line}" for line in cal.derivation] + [""]
    nets = [m for m in get_experiment(experiment) if cal.reference(m, "test_error")]
    if "tolerance" not in policy.checks or not nets:
        return md
    z = band_z(target, len(nets))
    declared = policy.declared
    rows = []
    for model in nets:
        ref = cal.references[(model, "test_error")]
        bands = [f"± {z * ref.sd(k, len(declared)):.2f}" for k in seeds]
        rows.append(
            (model, f"{ref.mean:.2f}", f"{ref.sigma_run:.2f}", f"{ref.sigma_impl:.2f}", *bands)
        )
    head = ("net", "expected %", "sigma_run", "sigma_impl", *(f"band K={k}" for k in seeds))
    md += [
        f"Bands for the final test error (z = {z:.2f}, so that a faithful run passes all "
        f"{len(nets)} nets together with P = {target}); each declared deviation adds one "
        "sigma_impl² to the variance"
        + (f" (declared by this preset: {'; '.join(declared)})" if declared else "")
        + ":",
        "",
        markdown_table(head, rows),
        "",
        *power_budget_lines(nets, policy, z, seeds),
    ]
    return md


def power_budget_lines(
    nets: list[str], policy: Policy, z: float, seeds: tuple[int, ...]
) -> list[str]:
    """Why the tolerance check detects no more: its variance, term by term, at each K, and
    P(fail | 1 pp worse) with infinitely many seeds (only the seeds' term shrinks)."""
    assert policy.calibration is not None
    rows = []
    for model in nets:
        ref = policy.calibration.references[(model, "test_error")]
        for k in seeds:
            b = power_budget(ref, k, z, len(policy.declared))
            rows.append(
                (model, k, *(f"{x:.3f}" for x in (b.seeds, b.impl, b.expected)),
                 _p(b.fail_worse), _p(b.fail_worse_limit))
            )  # fmt: skip
    head = (
        "net",
        "K",
        "sigma_run²/K",
        "sigma_impl²·(1+D)",
        "Var(expected)",
        f"P(fail), {WORSE_PP:g} pp worse",
        "same, K = ∞",
    )
    intro = (
        "What limits the check (pp²): more seeds shrink only the first term; the spread "
        "between implementations and the uncertainty of the expected value stay, so a run "
        f"{WORSE_PP:g} pp worse is failed at most with the probability of the last column."
    )
    return [intro, "", markdown_table(head, rows), ""]


def characteristics_section(
    preset: str,
    experiment: str,
    seeds: tuple[int, ...] = SEEDS_SHOWN,
    policy: Policy | None = None,
) -> list[str]:
    """Each claim: asserted or why not, P(pass | faithful), P(fail | 1 pp worse) and the
    shift failed with 80 % power, at each K of ``seeds``."""
    rows = []
    for check, ch in operating_characteristics(preset, experiment, seeds, policy):
        passes = [_p(p) for p in ch.pass_faithful] or ["-"] * len(seeds)
        worse = [_p(p) for p in ch.fail_worse] or ["-"] * len(seeds)
        shifts = [_shift(x) for x in ch.detectable] or ["-"] * len(seeds)
        status = "asserted" if ch.asserted else f"not asserted: {ch.reason}"
        rows.append((check, ch.label, *passes, *worse, *shifts, status))
    head = (
        "check",
        "claim",
        *(f"P(pass), faithful, K={k}" for k in seeds),
        *(f"P(fail), {WORSE_PP:g} pp worse, K={k}" for k in seeds),
        *(f"pp worse failed with {POWER:.0%} power, K={k}" for k in seeds),
        "status",
    )
    intro = (
        "What each verdict can detect at this preset: the probability that a faithful run "
        "passes, that a run 1 pp worse fails (its lower net, or the net of a bound, moved "
        "towards failing), and the smallest such shift failed with 80 % power, with K seeds. "
        "A claim is asserted on a run of K seeds only where a faithful run of K seeds passes "
        "with the preset's pass probability; '-' where no reference makes it computable, "
        f"'> {MAX_SHIFT:g}' where no shift up to that is detected."
    )
    return ["## Operating characteristics", "", intro, "", markdown_table(head, rows), ""]


def _shift(x: float | None) -> str:
    return f"> {MAX_SHIFT:g}" if x is None else f"{x:.2f}"


def trust_sections(
    preset: str,
    experiment: str,
    seeds: tuple[int, ...] = SEEDS_SHOWN,
    policy: Policy | None = None,
) -> list[str]:
    """The three sections above, for the report (at the run's K) or `repro calibration`."""
    policy = policy or policy_for(preset)
    return (
        characteristics_section(preset, experiment, seeds, policy)
        + tolerance_model_section(preset, experiment, seeds, policy)
        + references_section()
    )
