"""The paper's claims, checked on a finished reproduction matrix (He et al. 2016, Sec. 4.2):
completeness, the Fig. 6 orderings (degradation and its residual cure), Table 6 tolerance and the
Fig. 7 layer responses. `repro report` shows these verdicts and `acceptance/` asserts them.

Each ordering claim ("A's error is higher than B's") is decided by one rule, :func:`compare`: it
holds when every seed has both numbers, A's mean exceeds B's, and A is higher in most seeds. The
claims come from ``baselines/he2016_fig6_claims.json`` and ``he2016_fig7_claims.json``; which of
them a preset asserts, and with what tolerance, from ``baselines/tolerances.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from repro.baselines import load_baseline
from repro.errors import ReproError
from repro.fileio import INTEGER, NUMBER, wrong_types
from repro.reproduce.presets import config_mismatch, get_experiment, get_preset
from repro.reproduce.summary import mean_std, seed_metrics
from repro.tables import markdown_table, text_table
from repro.train.rundir import (
    FINAL,
    LAYER_RESPONSE_JSON,
    Matrix,
    Run,
    expected_end,
    file_digest,
    read_layer_response,
)

PASS, FAIL, SKIP, INCONCLUSIVE = "pass", "fail", "skip", "inconclusive"
# A claim that needs data an imported run lacks (`repro import-run`): never a pass.
NOT_ASSESSABLE = "not assessable"
REQUIRED_FIELDS = ("iteration", "train_error", "test_error")
TRAIN_KEYS = ("final_train_error", "last10_train_error")
TEST_KEYS = ("final_test_error",)


@dataclass
class Verdict:
    """The outcome of one check and the table that explains it."""

    name: str
    status: str
    reason: str
    header: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def table(self) -> str:
        """The rows as an aligned plain-text table (for pytest failure output)."""
        return text_table(self.header, self.rows) if self.header else ""

    def markdown(self) -> str:
        return markdown_table(self.header, self.rows) if self.header else ""

    def __str__(self) -> str:
        return f"{self.name}: {self.status.upper()} - {self.reason}\n{self.table()}"


@dataclass(frozen=True)
class Comparison:
    """'higher > lower' over the seeds: the two means, the seeds where it holds, the verdict."""

    higher_mean: float | None
    lower_mean: float | None
    wins: int
    seeds: int
    holds: bool


def compare(
    higher: list[float | None],
    lower: list[float | None],
    means: tuple[float | None, float | None] | None = None,
) -> Comparison:
    """Does ``higher`` exceed ``lower`` (one value per seed, None where missing) on the means and
    in most seeds? ``means`` (higher, lower) default to those of the finite per-seed values."""
    pairs = [(a, b) for a, b in zip(higher, lower) if a is not None and b is not None]
    mh, ml = means or (mean_std(higher)["mean"], mean_std(lower)["mean"])
    n = max(len(higher), len(lower))
    wins = sum(a > b for a, b in pairs)
    complete = len(pairs) == n
    holds = complete and mh is not None and ml is not None and mh > ml and wins * 2 > n
    return Comparison(mh, ml, wins, n, holds)


def claim_verdict(claim_id: str, holds: bool, not_asserted: dict[str, str]) -> str:
    """'ok' / 'FAIL', or 'not asserted (...)' for a claim the preset shows without asserting."""
    if claim_id in not_asserted:
        return f"not asserted ({'holds' if holds else 'does not hold'})"
    return "ok" if holds else "FAIL"


POLICY_TYPES: dict[str, tuple[Any, ...]] = {
    "checks": (list,),
    "baselines": (list,),
    "z": (NUMBER,),
    "sigma_pp": (NUMBER,),
    "selection_allowance_pp": (NUMBER,),
    "not_asserted": (dict,),
    "why": (str,),
    "layer_response_why": (str,),
}
CLAIM_TYPES: dict[str, tuple[Any, ...]] = {k: (str,) for k in ("id", "higher", "lower", "metric")}
ENTRY_TYPES: dict[str, tuple[Any, ...]] = {
    "test_error": (NUMBER,),
    "test_error_mean": (NUMBER,),
    "runs": (INTEGER,),
}


def _checked(name: str, where: str, obj: Any, spec: dict[str, tuple[Any, ...]], needs=()) -> Any:
    """``obj`` if it is an object with ``needs`` and the types of ``spec``; else one ReproError
    naming the baseline file (the claims never meet a malformed baseline)."""
    problems = [f"{where} is not an object"] if not isinstance(obj, dict) else []
    if not problems:
        problems = [f"{where} has no {k!r}" for k in needs if k not in obj]
        problems += wrong_types(obj, spec, where)
    if problems:
        raise ReproError(
            f"baselines/{name}.json: {problems[0]}; restore the file from the "
            "repository (git checkout baselines/)"
        )
    return obj


def preset_policy(preset: str) -> dict[str, Any]:
    """The tolerance/check policy of a preset from ``baselines/tolerances.json``."""
    presets = _checked(
        "tolerances", "the file", load_baseline("tolerances"), {"presets": (dict,)}, ("presets",)
    )["presets"]
    if preset not in presets:
        raise ReproError(f"baselines/tolerances.json has no policy for preset {preset!r}")
    policy = _checked("tolerances", f"presets.{preset}", presets[preset], POLICY_TYPES, ("checks",))
    if "tolerance" in policy["checks"]:
        needs = ("baselines", "z", "sigma_pp", "selection_allowance_pp")
        _checked("tolerances", f"presets.{preset}", policy, POLICY_TYPES, needs)
    return policy


def load_claims(
    name: str, needs: tuple[str, ...] = ("id", "higher", "lower")
) -> list[dict[str, Any]]:
    """The claims of ``baselines/<name>.json``, each with ``needs`` (id and models; Fig. 6's
    claims also name their metric)."""
    claims = _checked(name, "the file", load_baseline(name), {"claims": (list,)}, ("claims",))
    return [
        _checked(name, f"claim {i + 1}", c, CLAIM_TYPES, needs)
        for i, c in enumerate(claims["claims"])
    ]


def seed_values(matrix: Matrix, model: str, key: str) -> list[float | None]:
    """One metric for every seed of a model, in seed order (None where missing)."""
    runs = matrix.runs.get(model)
    return [seed_metrics(runs[s])[key] for s in matrix.seeds] if runs else []


def _not_asserted_note(not_asserted: dict[str, str], claim_ids: list[str]) -> str:
    """The preset's reasons for the claims it measures but does not assert (empty if none)."""
    why = [f"{cid}: {not_asserted[cid]}" for cid in claim_ids if cid in not_asserted]
    return f"; not asserted at this preset: {'; '.join(why)}" if why else ""


def lacks(run: Run) -> list[str]:
    """What an imported run lacks (its config's ``imported.lacks``); [] for our own runs."""
    record = run.imported
    return [str(x) for x in record.get("lacks", [])] if record else []


def unfinished_runs(matrix: Matrix, models: Iterable[str] | None = None) -> list[str]:
    """``model/seed<k>`` of every run (of ``models``; default all) that has not finished."""
    names = matrix.runs if models is None else models
    return [
        f"{m}/seed{s}"
        for m in names
        for s, run in matrix.runs.get(m, {}).items()
        if not run.finished
    ]


def lacking(matrix: Matrix, models: Iterable[str], need: str) -> list[str]:
    """``model/seed<k>`` of every imported run of ``models`` that lacks ``need``."""
    return [
        f"{m}/seed{s}"
        for m in models
        for s, run in matrix.runs.get(m, {}).items()
        if need in lacks(run)
    ]


def unless_unfinished(verdict: Verdict, matrix: Matrix, models: Iterable[str]) -> Verdict:
    """A pass or fail that rests on an unfinished run is inconclusive: its last evaluation is
    not the schedule's end."""
    waiting = unfinished_runs(matrix, models)
    if verdict.status not in (PASS, FAIL) or not waiting:
        return verdict
    reason = f"inconclusive (run not finished: {', '.join(waiting)}); so far: {verdict.reason}"
    return Verdict(verdict.name, INCONCLUSIVE, reason, verdict.header, verdict.rows)


def _ordering_verdict(
    name: str, rows: list[tuple], failed: list[str], note: str, header: tuple
) -> Verdict:
    if failed:
        return Verdict(name, FAIL, "does not hold: " + ", ".join(failed) + note, header, rows)
    missing = sorted({str(r[-1]) for r in rows if str(r[-1]).startswith(NOT_ASSESSABLE)})
    if missing:
        return Verdict(name, NOT_ASSESSABLE, "; ".join(missing) + note, header, rows)
    return Verdict(name, PASS, "holds on the means and in most seeds" + note, header, rows)


# --- completeness --------------------------------------------------------------------------


def _metric_problems(run: Run, config: dict[str, Any]) -> list[str]:
    """Missing or non-finite fields, a short or repeated evaluation series, no final.pt."""
    problems = []
    for i, row in enumerate(run.metrics):
        problems += [
            f"evaluation {i + 1} has no {key}"
            for key in REQUIRED_FIELDS
            if row.get(key) is None and key not in lacks(run)
        ]
        problems += [
            f"evaluation {i + 1} (iteration {row.get('iteration')}): {key}={v}"
            for key, v in row.items()
            if isinstance(v, float) and not math.isfinite(v)
        ]
    if not run.metrics:
        return problems + ["no evaluations in metrics.jsonl"]
    end, last = expected_end(config), run.metrics[-1].get("iteration")
    if end is None and run.imported is None:
        problems.append("config has no total_iterations")
    elif last != end:
        problems.append(f"last evaluation at iteration {last}, schedule ends at {end}")
    every, prev = config.get("eval_every"), 0
    for row in run.metrics:
        it = row.get("iteration")
        if not isinstance(it, int):
            continue
        if it < prev or (it == prev and prev != 0):
            problems.append(f"iterations go backwards or repeat at {it}")
        elif every and it - prev > every:
            problems.append(f"missing evaluation between iterations {prev} and {it}")
        prev = it
    if not run.finished:
        problems.append("final.pt is missing (schedule not finished)")
    return problems


def run_problems(run: Run, model: str, seed: int, preset: str) -> list[str]:
    """Everything that keeps one run from counting: unreadable files, a config that departs from
    the preset, a subset where the preset needs the official data, incomplete metrics."""
    if run.config is None:
        return list(run.problems) or ["no config.json"]
    p = get_preset(preset)
    problems = list(run.problems) + [
        m
        for m in config_mismatch(run.config, p, model, seed)
        if not m.startswith("config has no") or run.imported is None
    ]
    official = run.config.get("data_official")
    if p.needs_full_data and official is not True and (official is False or not run.imported):
        problems.append("trained on a subset, preset needs the official data")
    return problems + _metric_problems(run, run.config) + lr_problems(run)


def lr_problems(run: Run) -> list[str]:
    """The lr recorded at every evaluation is the step schedule's (Sec. 4.2: lr x gamma at each
    milestone; lr 0.01 while a warm-up lasts, which never comes back): a cosine or otherwise
    altered schedule is caught here, whatever the config says. Imports are not checked."""
    config = run.config
    if config is None or run.imported is not None:
        return []
    marks = config.get("milestone_iterations")
    if not isinstance(marks, list) or not all(isinstance(m, int) for m in marks):
        return ["config has no milestone_iterations: the lr trace cannot be checked"]
    base, gamma = config.get("lr"), config.get("gamma")
    if base is None or gamma is None:
        return ["config has no lr or gamma: the lr trace cannot be checked"]
    warming = bool(config.get("warmup_active")) and config.get("warmup_lr") is not None
    for row in run.metrics:
        it, got = row["iteration"], row.get("lr")
        want = base * gamma ** sum(1 for m in marks if it - 1 >= m)  # the lr of step it - 1
        if got is not None and warming and math.isclose(got, config["warmup_lr"], rel_tol=1e-6):
            continue
        warming = False  # once the schedule's lr shows, the warm-up is over
        if got is None or not math.isclose(got, want, rel_tol=1e-6):
            return [f"lr {got} at iteration {it}, the recipe's step schedule says {want:.6g}"]
    return []


def check_completeness(matrix: Matrix) -> Verdict:
    """Every model of the experiment and seed finished its schedule, with finite metrics and the
    preset's config."""
    rows: list[tuple[Any, ...]] = []
    bad = unassessed = 0
    for model in get_experiment(matrix.experiment):
        if model not in matrix.runs:
            bad += 1
            rows.append(
                (model, "-", None, None, "not in summary.json: the matrix lacks this model")
            )
    for model, seeds in matrix.runs.items():
        for seed, run in seeds.items():
            problems = run_problems(run, model, seed, matrix.preset)
            last = run.metrics[-1].get("iteration") if run.metrics else None
            end = expected_end(run.config) if run.config else None
            unknown = [x for x in lacks(run) if x.startswith(("schedule", "recipe", "data"))]
            bad += bool(problems)
            unassessed += bool(unknown) and not problems
            status = "; ".join(problems[:3]) or (
                f"{NOT_ASSESSABLE}: imported, {', '.join(unknown)} unknown" if unknown else "ok"
            )
            rows.append((model, seed, end, last, status))
    header = ("model", "seed", "end", "last", "status")
    if bad:
        reason = f"{bad} of {len(rows)} runs incomplete or inconsistent"
        return Verdict("completeness", FAIL, reason, header, rows)
    if unassessed:
        reason = f"{unassessed} of {len(rows)} imported runs do not say their schedule or recipe"
        return Verdict("completeness", NOT_ASSESSABLE, reason, header, rows)
    reason = f"all {len(rows)} runs finished their schedule"
    return Verdict("completeness", PASS, reason, header, rows)


# --- orderings (Fig. 6 claims) -------------------------------------------------------------


def _ordering_check(matrix: Matrix, name: str, prefixes: tuple[str, ...]) -> Verdict:
    header = ("claim", "metric", "higher (mean)", "lower (mean)", "seeds holding", "verdict")
    policy = preset_policy(matrix.preset)
    if name not in policy["checks"]:
        return Verdict(
            name, SKIP, f"not asserted for preset {matrix.preset}: {policy.get('why', '')}"
        )
    claims = [
        c
        for c in load_claims("he2016_fig6_claims", tuple(CLAIM_TYPES))
        if c["id"].startswith(prefixes) and c["higher"] in matrix.runs and c["lower"] in matrix.runs
    ]
    if not claims:
        return Verdict(
            name, SKIP, f"experiment {matrix.experiment} has none of the models it compares"
        )
    not_asserted = policy.get("not_asserted", {})
    rows, failed = [], []
    for claim in claims:
        hi, lo = claim["higher"], claim["lower"]
        metric = "train_error" if claim["metric"] == "train_error" else "test_error"
        missing = lacking(matrix, (hi, lo), metric)
        for key in TRAIN_KEYS if metric == "train_error" else TEST_KEYS:
            c = compare(seed_values(matrix, hi, key), seed_values(matrix, lo, key))
            verdict = claim_verdict(claim["id"], c.holds, not_asserted)
            if missing:
                verdict = f"{NOT_ASSESSABLE}: no {metric} in {', '.join(missing)} (imported)"
            if verdict == "FAIL":
                failed.append(f"{hi} > {lo} on {key}")
            rows.append(
                (f"{hi} > {lo}", key, c.higher_mean, c.lower_mean, f"{c.wins}/{c.seeds}", verdict)
            )
    note = _not_asserted_note(not_asserted, [c["id"] for c in claims])
    models = {m for c in claims for m in (c["higher"], c["lower"])}
    return unless_unfinished(_ordering_verdict(name, rows, failed, note, header), matrix, models)


def check_degradation(matrix: Matrix) -> Verdict:
    """Plain-56 has higher training (final, last-10%) and test error than plain-20 (Fig. 6)."""
    return _ordering_check(matrix, "degradation", ("degradation_",))


def check_residual(matrix: Matrix) -> Verdict:
    """ResNet-56 beats plain-56 on train and test error, and beats ResNet-20 on test error."""
    return _ordering_check(matrix, "residual", ("residual_cure_", "resnet_depth_gain"))


# --- tolerance -----------------------------------------------------------------------------


def baseline_for(model: str, files: list[str]) -> dict[str, Any] | None:
    """The first baseline number for ``model``: value, runs behind it, selection, source."""
    for name in files:
        data = _checked(
            name, "the file", load_baseline(name), {"models": (dict,), "runs": (INTEGER,)}
        )
        entry = data.get("models", {}).get(model)
        if entry is None:
            continue
        entry = _checked(name, f"models.{model}", entry, ENTRY_TYPES)
        if "test_error" not in entry:
            continue
        if "test_error_mean" in entry:
            value, runs = entry["test_error_mean"], int(entry.get("runs", 1))
        else:
            value, runs = entry["test_error"], int(data.get("runs", 1))
        best = data.get("metric") == "best_on_test"
        return {"value": float(value), "runs": runs, "best_on_test": best, "source": name}
    return None


def tolerance_pp(policy: dict[str, Any], k: int, base: dict[str, Any]) -> float:
    """z * sigma * sqrt(1/K + 1/B), plus the selection allowance for best-on-test baselines."""
    tol = policy["z"] * policy["sigma_pp"] * math.sqrt(1 / k + 1 / base["runs"])
    return tol + (policy["selection_allowance_pp"] if base["best_on_test"] else 0.0)


def _unstated_data_or_recipe(matrix: Matrix) -> Verdict | None:
    """Not assessable when an imported run does not state its data or recipe: the published
    numbers are for the official data and a known recipe."""
    runs = [
        f"{m}/seed{s}"
        for m, seeds in matrix.runs.items()
        for s, run in seeds.items()
        if any(x.startswith(("data", "recipe")) for x in lacks(run))
    ]
    if not runs:
        return None
    reason = (
        f"{NOT_ASSESSABLE}: published numbers are for the official data and a known "
        f"recipe, which these imported runs do not state: {', '.join(runs[:4])} (import "
        "with --set data_official=... and the recipe's fields)"
    )
    return Verdict("tolerance", NOT_ASSESSABLE, reason)


def check_tolerance(matrix: Matrix) -> Verdict:
    """|mean final test error - published number| within the preset's stated tolerance."""
    policy = preset_policy(matrix.preset)
    if "tolerance" not in policy["checks"]:
        return Verdict(
            "tolerance", SKIP, f"not asserted for preset {matrix.preset}: {policy.get('why', '')}"
        )
    unstated = _unstated_data_or_recipe(matrix)
    if unstated is not None:
        return unstated
    header = (
        "model",
        "measured (mean)",
        "seeds",
        "baseline",
        "source",
        "|delta|",
        "tolerance",
        "verdict",
    )
    rows: list[tuple[Any, ...]] = []
    failed, compared = [], 0
    for model in matrix.runs:
        base = baseline_for(model, policy["baselines"])
        vals = [v for v in seed_values(matrix, model, "final_test_error") if v is not None]
        measured = mean_std(vals)["mean"]
        if base is None:
            rows.append((model, measured, len(vals), None, "no published number", None, None, "-"))
            continue
        compared += 1
        tol = tolerance_pp(policy, max(1, len(vals)), base)
        delta = abs(measured - base["value"]) if measured is not None else None
        ok = delta is not None and delta <= tol
        if not ok:
            failed.append(model)
        rows.append(
            (
                model,
                measured,
                len(vals),
                base["value"],
                base["source"],
                delta,
                tol,
                "ok" if ok else "FAIL",
            )
        )
    if not compared:
        return Verdict(
            "tolerance", SKIP, "no model of this experiment has a published number", header, rows
        )
    if failed:
        verdict = Verdict(
            "tolerance", FAIL, "outside tolerance: " + ", ".join(failed), header, rows
        )
    else:
        verdict = Verdict("tolerance", PASS, f"{compared} models within tolerance", header, rows)
    return unless_unfinished(verdict, matrix, matrix.runs)


# --- layer responses (Fig. 7 claims) -------------------------------------------------------


def _response_values(models: dict[str, Any], model: str, seeds: list[int]) -> list[float | None]:
    per_seed = models.get(model, {}).get("seeds", {})
    return [per_seed.get(f"seed{s}", {}).get("mean_std") for s in seeds]


def check_layer_response(matrix: Matrix) -> Verdict:
    """Mean response std: ResNet < plain at equal depth, ResNet-56 < ResNet-20 (Fig. 7)."""
    policy = preset_policy(matrix.preset)
    if "layer_response" not in policy["checks"]:
        why = policy.get("layer_response_why", policy.get("why", ""))
        return Verdict("layer_response", SKIP, f"not asserted for preset {matrix.preset}: {why}")
    doc = read_layer_response(matrix.root)
    missing = lacking(matrix, matrix.runs, "checkpoint")
    if doc is None and missing:
        return Verdict(
            "layer_response",
            NOT_ASSESSABLE,
            f"Fig. 7 needs the trained weights; imported without a checkpoint: {', '.join(missing)}",
        )
    if doc is None:
        return Verdict(
            "layer_response",
            SKIP,
            f"no {LAYER_RESPONSE_JSON}: run `repro analyze layer-response {matrix.root}`",
        )
    claims = load_claims("he2016_fig7_claims")
    stale = stale_responses(matrix, doc, {m for c in claims for m in (c["higher"], c["lower"])})
    if stale:
        return Verdict(
            "layer_response",
            FAIL,
            f"{LAYER_RESPONSE_JSON} does not belong to the "
            f"run's checkpoints ({'; '.join(stale[:3])}): run `repro analyze "
            f"layer-response {matrix.root}` again",
        )
    models, not_asserted = doc["models"], policy.get("not_asserted", {})
    header = ("claim", "higher (mean)", "lower (mean)", "seeds holding", "verdict")
    rows, failed = [], []
    for claim in claims:
        hi, lo = claim["higher"], claim["lower"]
        if hi not in matrix.runs or lo not in matrix.runs:
            continue
        means = (models.get(hi, {}).get("mean_std"), models.get(lo, {}).get("mean_std"))
        c = compare(
            _response_values(models, hi, matrix.seeds),
            _response_values(models, lo, matrix.seeds),
            means,
        )
        verdict = claim_verdict(claim["id"], c.holds, not_asserted)
        if verdict == "FAIL":
            failed.append(f"{hi} > {lo}")
        rows.append((f"{hi} > {lo}", c.higher_mean, c.lower_mean, f"{c.wins}/{c.seeds}", verdict))
    if not rows:
        return Verdict("layer_response", SKIP, f"experiment {matrix.experiment} compares no pair")
    note = _not_asserted_note(not_asserted, [c["id"] for c in claims])
    involved = {m for c in claims for m in (c["higher"], c["lower"]) if m in matrix.runs}
    result = _ordering_verdict("layer_response", rows, failed, note, header)
    return unless_unfinished(result, matrix, involved)


def stale_responses(matrix: Matrix, doc: dict[str, Any], models: set[str]) -> list[str]:
    """Runs whose final.pt is not the checkpoint the Fig. 7 numbers were computed from (by
    SHA-256), or whose numbers do not say which checkpoint they came from."""
    stale = []
    for model in sorted(models & set(matrix.runs)):
        for seed, run in matrix.runs[model].items():
            final = run.path / FINAL
            entry = doc["models"].get(model, {}).get("seeds", {}).get(f"seed{seed}")
            if entry is None or not final.is_file():
                continue  # a missing result fails the claim; an unfinished run is inconclusive
            recorded = entry.get("checkpoint_sha256")
            if recorded is None:
                stale.append(f"{model}/seed{seed}: computed without naming its checkpoint")
            elif recorded != file_digest(final):
                stale.append(f"{model}/seed{seed}: final.pt changed since")
    return stale


CHECKS = (
    check_completeness,
    check_degradation,
    check_residual,
    check_tolerance,
    check_layer_response,
)


def all_verdicts(matrix: Matrix) -> list[Verdict]:
    """Every check, in order."""
    return [check(matrix) for check in CHECKS]
