"""The tolerance model behind every asserted claim, derived by code from recorded runs.

A faithful run's final test error is modelled as normal around an *expected value* ``mu`` with
three variance terms (He et al. 2016 report one number per net, ResNet-110 as 6.61 +/- 0.16 over
5 runs, so the spread has to come from reruns):

* ``sigma_run``: seed-to-seed spread of one implementation. Pooled sample standard deviation of
  every published group of >= 3 runs (weighted by degrees of freedom), floored per model at the
  binomial standard error of an error rate on the test set (a net's error cannot be measured more
  precisely than the test set allows).
* ``sigma_impl``: spread between faithful implementations (framework, data order, details the
  paper leaves open). DerSimonian-Laird method-of-moments estimate, pooled over every
  (recipe, model) cell of the paper's and the common recipe with two or more independent
  sources; floored at 0.
* ``Var(mu)``: the uncertainty of the expected value itself (the sources' own run noise).

A mean over K seeds then has sd ``sqrt(sigma_run^2/K + sigma_impl^2 * (1 + D) + Var(mu))``,
where each of the D *declared* deviations from the preset (e.g. bf16 asked for) adds one more
between-implementation variance. Best-on-test numbers are turned into final-epoch ones with the
mean (final - best) gap of sources that print both. The `mini` preset is calibrated on this
project's own seeds (``baselines/mini_calibration.json``): same code, so ``sigma_impl`` = 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from repro.baselines import load_baseline
from repro.errors import ReproError
from repro.fileio import INTEGER, NUMBER, wrong_types

REFERENCE_RUNS = "reference_runs"
MINI_CALIBRATION = "mini_calibration"
TEST_IMAGES = {"official": 10_000, "mini": 1_017}  # test-set size behind each reference
TRAIN_IMAGES = {"official": 50_000, "mini": 5_085}
OTHER_RECIPE = "other"  # a record whose recipe is neither the paper's nor the common one
MIN_GROUP = 3  # runs a group needs before its sample std counts towards sigma_run
METRICS = ("test_error", "train_error", "response_std")

RECORD_TYPES: dict[str, tuple[Any, ...]] = {
    k: (str,) for k in ("id", "source", "url", "quote", "framework", "recipe", "data", "runs")
} | {"results": (list,), "verified": (bool,), "recipe_fields": (dict,)}
# The documented labelling rule (docs/tolerance-model.md): a record is `paper` or `common` only
# when no recipe field quoted from its own code contradicts that recipe; another optimiser,
# projection shortcuts or no augmentation make it `other`, and its schedule must be the label's.
CONTRADICTS = {
    "optimizer": ("nesterov", "adam"),
    "shortcut": ("B",),
    "augmentation": ("none",),
}
SCHEDULES = {"paper": "64k iterations", "common": "200 epochs"}
# Training errors: no source publishes a group of runs, so no spread is measured. The model
# (docs/tolerance-model.md): sigma_run = max(test-error sigma_run, RELATIVE_TRAIN_SPREAD x the
# net's training error), i.e. 3.5x the largest relative seed spread of any test-error group
# (issue 18's ResNet-56: 0.54 / 7.56 = 7 %), rounded up, and never below the test error's.
RELATIVE_TRAIN_SPREAD = 0.25
RESULT_TYPES: dict[str, tuple[Any, ...]] = {
    "model": (str,),
    "selection": (str,),
    "aggregate": (str,),
    "value": (NUMBER,),
    "k": (INTEGER, type(None)),
    "std": (NUMBER, type(None)),
    "std_kind": (str, type(None)),
    "values": (list, type(None)),
    "metric": (str,),
}
SELECTIONS = ("final", "best_on_test", "val_selected", "unknown")
AGGREGATES = ("single", "mean", "median", "best_of_k", "values")


@dataclass(frozen=True)
class Result:
    """One published number for one net, with what it is (how selected, how aggregated)."""

    source: str
    recipe: str
    data: str
    model: str
    metric: str
    selection: str
    aggregate: str
    value: float
    k: int = 1
    std: float | None = None
    std_kind: str | None = None
    values: tuple[float, ...] = ()
    verified: bool = True  # False: the source text could not be read; shown, never used

    def sample_std(self) -> float | None:
        """The spread of this group's runs as a sample std; None below MIN_GROUP runs."""
        if self.values and len(self.values) >= MIN_GROUP:
            return statistics.stdev(self.values)
        if self.aggregate == "mean" and self.std is not None and self.k >= MIN_GROUP:
            return (
                self.std * math.sqrt(self.k / (self.k - 1))
                if self.std_kind == "population"
                else self.std
            )
        return None


def _bad(where: str, problem: str) -> ReproError:
    return ReproError(
        f"baselines/{REFERENCE_RUNS}.json: {where} {problem}; restore the file from the "
        "repository (git checkout baselines/)"
    )


def _result(record: dict[str, Any], i: int, entry: Any) -> Result:
    """One validated result of one record."""
    where = f"record {record['id']!r} result {i + 1}"
    if not isinstance(entry, dict):
        raise _bad(where, "is not an object")
    problems = [
        f"has no {k!r}" for k in ("model", "selection", "aggregate", "value") if k not in entry
    ]
    problems += wrong_types(entry, RESULT_TYPES, where)
    if entry.get("selection") not in SELECTIONS or entry.get("aggregate") not in AGGREGATES:
        problems.append(f"has selection/aggregate outside {SELECTIONS}/{AGGREGATES}")
    raw = entry.get("values")
    values: list[Any] = raw if isinstance(raw, list) else []  # a wrong type is a problem above
    numbers = [entry.get("value"), entry.get("std") or 0.0, *values]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        problems.append("has a non-numeric entry in 'values'")
    elif not all(math.isfinite(v) and v >= 0 for v in numbers):
        problems.append("has a negative or non-finite number")
    if entry.get("k") is not None and not (isinstance(entry["k"], int) and entry["k"] >= 1):
        problems.append("has 'k' below 1")
    if entry.get("aggregate") == "values" and not values:
        problems.append("has aggregate 'values' but no 'values'")
    if problems:
        raise _bad(where, problems[0].removeprefix(where + ": "))
    return Result(
        source=record["id"],
        recipe=record["recipe"],
        data=record["data"],
        model=entry["model"],
        metric=entry.get("metric", "test_error"),
        selection=entry["selection"],
        aggregate=entry["aggregate"],
        value=float(entry["value"]),
        k=int(entry.get("k") or (len(values) if values else 1)),
        std=entry.get("std"),
        std_kind=entry.get("std_kind"),
        values=tuple(float(v) for v in values),
        verified=bool(record.get("verified", False)),
    )


def label_problems(record: dict[str, Any]) -> list[str]:
    """Where a record's recipe label contradicts the recipe fields quoted from its code."""
    label, fields = record["recipe"], record.get("recipe_fields")
    if label == OTHER_RECIPE:
        return []
    if fields is None:
        return [f"is labelled {label!r} without 'recipe_fields' read from its code"]
    problems = [
        f"is labelled {label!r} but its {key} is {fields[key]!r} (the documented rule: other)"
        for key, bad in CONTRADICTS.items()
        if fields.get(key) in bad
    ]
    if fields.get("schedule") != SCHEDULES.get(label):
        problems.append(f"is labelled {label!r} but its schedule is {fields.get('schedule')!r}")
    return problems


def _record_problems(record: Any, n: int, runs: dict[str, str]) -> list[str]:
    """Everything wrong with one record: shape, types, its label, runs another record holds."""
    if not isinstance(record, dict):
        return ["is not an object"]
    needs = ("id", "source", "url", "quote", "recipe", "data", "results")
    problems = [f"has no {k!r}" for k in needs if k not in record]
    problems += [
        p.removeprefix(f"record {n + 1}: ")
        for p in wrong_types(record, RECORD_TYPES, f"record {n + 1}")
    ]
    if problems:
        return problems
    key = str(record.get("runs", record["id"]))
    if key in runs and record["results"]:
        return [
            f"reports the runs {key!r} that record {runs[key]!r} already reports: one "
            "estimate per set of runs"
        ]
    runs[key] = record["id"]
    return label_problems(record)


def records_results(doc: dict[str, Any]) -> list[Result]:
    """Every result of every record of a reference-runs document, validated: each set of runs
    once (``runs``, default the record's id), each label consistent with its recipe fields."""
    records = doc.get("records")
    if not isinstance(records, list):
        raise _bad("the file", "has no 'records' list")
    out: list[Result] = []
    runs: dict[str, str] = {}
    for n, record in enumerate(records):
        problems = _record_problems(record, n, runs)
        if problems:
            name = record.get("id", n + 1) if isinstance(record, dict) else n + 1
            raise _bad(f"record {name!r}", problems[0])
        out += [_result(record, i, e) for i, e in enumerate(record["results"])]
    return out


def load_results() -> list[Result]:
    """The published results of ``baselines/reference_runs.json`` whose source text was read
    (``verified``); the others are shown in the report but calibrate nothing."""
    return [r for r in records_results(load_baseline(REFERENCE_RUNS)) if r.verified]


# --- the estimators --------------------------------------------------------------------------


def selection_offset(results: list[Result]) -> float:
    """Mean (final - best-on-test) error over the sources that print both for the same runs:
    what picking the best epoch on the test set gains. 0 when no source prints both."""
    finals = {
        (r.source, r.model): r.value
        for r in results
        if r.selection == "final" and r.metric == "test_error"
    }
    gaps = [
        finals[(r.source, r.model)] - r.value
        for r in results
        if r.selection == "best_on_test"
        and r.metric == "test_error"
        and (r.source, r.model) in finals
    ]
    return statistics.fmean(gaps) if gaps else 0.0


def pooled_run_sigma(results: list[Result]) -> tuple[float, int]:
    """(pooled sample std, degrees of freedom) over every group of >= MIN_GROUP runs."""
    groups = [(r.k, s) for r in results if (s := r.sample_std()) is not None]
    dof = sum(k - 1 for k, _ in groups)
    if not dof:
        raise ReproError(
            f"baselines/{REFERENCE_RUNS}.json lists no group of {MIN_GROUP} or more runs: the "
            "seed-to-seed spread cannot be estimated"
        )
    return math.sqrt(sum((k - 1) * s * s for k, s in groups) / dof), dof


def binomial_floor(error_pct: float, n: int) -> float:
    """Standard error (percentage points) of an error rate measured on ``n`` images."""
    p = min(max(error_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n)


@dataclass(frozen=True)
class Estimate:
    """One source's estimate of a faithful run's mean final error, and its variance in units of
    sigma_run^2 (1 for one run, 1/k for a mean of k, pi/(2k) for a median of k)."""

    source: str
    value: float
    weight_units: float


def to_estimate(r: Result, offset: float) -> Estimate | None:
    """A result as an estimate of the mean final-epoch error; None for a best-of-k number when
    its source also gives the mean (the mean is used)."""
    if r.aggregate == "best_of_k":
        return None
    value = r.value + (offset if r.selection == "best_on_test" else 0.0)
    if r.aggregate == "median":
        units = math.pi / (2 * r.k)
    else:
        units = 1 / r.k if r.aggregate in ("mean", "values") else 1.0
    return Estimate(r.source, value, units)


SELECTION_PREFERENCE = ("final", "val_selected", "unknown", "best_on_test")


def one_per_runs(results: list[Result]) -> list[Result]:
    """One result per (source, net, metric): a source's numbers for one net are the same runs
    (its final and its best-on-test error, a summary and its listed runs), so they are one
    estimate. The final-epoch number is kept first, then the one over the most runs; best-of-k
    numbers never (their source's mean is used)."""
    best: dict[tuple[str, str, str], Result] = {}
    for r in results:
        if r.aggregate == "best_of_k":
            continue
        key = (r.source, r.model, r.metric)
        rank = (SELECTION_PREFERENCE.index(r.selection), -r.k)
        old = best.get(key)
        if old is None or rank < (SELECTION_PREFERENCE.index(old.selection), -old.k):
            best[key] = r
    return list(best.values())


def cell_estimates(
    results: list[Result], recipe: str, offset: float, metric: str = "test_error"
) -> dict[str, list[Estimate]]:
    """Estimates of ``metric`` per model from the sources that used ``recipe``, one per set
    of runs (:func:`one_per_runs`)."""
    cells: dict[str, list[Estimate]] = {}
    for r in one_per_runs(results):
        if r.recipe == recipe and r.metric == metric:
            est = to_estimate(r, offset)
            if est is not None:
                cells.setdefault(r.model, []).append(est)
    return cells


def between_sigma(cells: list[list[Estimate]], sigma_run: float) -> tuple[float, int]:
    """(DerSimonian-Laird tau, cells used): the spread between independent sources beyond what
    their run noise explains, pooled over the cells with >= 2 sources."""
    q = df = c = 0.0
    used = 0
    for cell in cells:
        if len({e.source for e in cell}) < 2:
            continue
        w = [1 / (sigma_run**2 * e.weight_units) for e in cell]
        mean = sum(wi * e.value for wi, e in zip(w, cell)) / sum(w)
        q += sum(wi * (e.value - mean) ** 2 for wi, e in zip(w, cell))
        df += len(cell) - 1
        c += sum(w) - sum(wi * wi for wi in w) / sum(w)
        used += 1
    return (math.sqrt(max(0.0, (q - df) / c)) if c else 0.0), used


# --- reference distributions ----------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A faithful run's ``metric`` for ``model`` at one preset: expected value and spreads."""

    model: str
    metric: str
    mean: float
    sigma_run: float
    sigma_impl: float
    mean_var: float  # Var(mean): the sources' run noise and their implementations' offsets
    mean_var_run: float  # the part of Var(mean) that is the sources' run noise only
    sources: tuple[str, ...]

    def sd(self, k: int, deviations: int = 0) -> float:
        """Standard deviation of a faithful K-seed mean around ``mean`` (module docstring)."""
        impl = self.sigma_impl**2 * (1 + deviations)
        return math.sqrt(self.sigma_run**2 / k + impl + self.mean_var)


@dataclass(frozen=True)
class Calibration:
    """Every reference of one preset, and how its spreads were obtained (for the report)."""

    preset: str
    basis: str
    references: dict[tuple[str, str], Reference]
    derivation: tuple[str, ...]

    def reference(self, model: str, metric: str) -> Reference | None:
        return self.references.get((model, metric))


def random_effects(cell: list[Estimate], sigma_run: float, tau: float) -> tuple[float, float]:
    """(mean, variance of the mean) of one cell's estimates, weighted by 1/(run + between)."""
    w = [1 / (sigma_run**2 * e.weight_units + tau**2) for e in cell]
    return sum(wi * e.value for wi, e in zip(w, cell)) / sum(w), 1 / sum(w)


def shared_offset_evidence(results: list[Result], offset: float, sigma: float, tau: float) -> str:
    """Why orderings treat an implementation's offset as shared by its nets: the gap between
    two nets varies across sources far less than independent offsets would make it."""
    by_source: dict[str, dict[str, float]] = {}
    for r in one_per_runs(results):
        est = to_estimate(r, offset) if r.metric == "test_error" else None
        if est is not None:
            by_source.setdefault(r.source, {}).setdefault(r.model, est.value)
    pairs: dict[tuple[str, str], list[float]] = {}
    for models in by_source.values():
        for a in models:
            for b in models:
                if a < b:
                    pairs.setdefault((a, b), []).append(models[a] - models[b])
    if not pairs:
        return "no two nets share a source: orderings cannot be checked for shared offsets"
    (a, b), gaps = max(pairs.items(), key=lambda kv: (len(kv[1]), kv[0]))
    if len(gaps) < 2:
        return f"only one source has both {a} and {b}: shared offsets are assumed, not shown"
    independent = math.sqrt(2 * (sigma**2 + tau**2))
    return (
        f"orderings take an implementation's offset as shared by its nets (it cancels): the "
        f"{a} - {b} gap over {len(gaps)} sources has sd {statistics.stdev(gaps):.2f} pp, "
        f"against {independent:.2f} pp if each net had its own offset"
    )


def metric_references(
    results: list[Result],
    recipe: str,
    metric: str,
    offset: float = 0.0,
    modelled: float | None = None,
) -> tuple[dict[tuple[str, str], Reference], float, float, int]:
    """(references of ``metric`` for ``recipe``, sigma_run, sigma_impl, cells used), from the
    results of that metric only; ReproError when no group of runs gives its spread, unless
    ``modelled`` gives it: then each net's sigma_run is max(modelled, RELATIVE_TRAIN_SPREAD x
    its expected value) (the training-error spread model)."""
    results = [r for r in results if r.metric == metric]
    sigma = pooled_run_sigma(results)[0] if modelled is None else modelled
    relative = 0.0 if modelled is None else RELATIVE_TRAIN_SPREAD
    recipes = sorted({r.recipe for r in results} - {OTHER_RECIPE})
    cells = [c for rec in recipes for c in cell_estimates(results, rec, offset, metric).values()]
    tau, used = between_sigma(cells, sigma)
    images = {"test_error": TEST_IMAGES["official"], "train_error": TRAIN_IMAGES["official"]}
    refs = {}
    for model, cell in cell_estimates(results, recipe, offset, metric).items():
        mean, _ = random_effects(cell, sigma, tau)
        floor = binomial_floor(mean, images[metric]) if metric in images else 0.0
        run = max(sigma, relative * mean, floor)
        _, var = random_effects(cell, run, tau)
        _, var_run = random_effects(cell, run, 0.0)
        sources = tuple(sorted({e.source for e in cell}))
        refs[(model, metric)] = Reference(model, metric, mean, run, tau, var, var_run, sources)
    return refs, sigma, tau, used


def _other_metrics(results: list[Result], recipe: str, test_sigma: float) -> tuple[dict, list[str]]:
    """References of training error and response std where the records give their spread;
    training errors without one get the conservative spread model (RELATIVE_TRAIN_SPREAD)."""
    refs: dict[tuple[str, str], Reference] = {}
    lines = []
    for metric in METRICS[1:]:
        measured = any(r.metric == metric and r.sample_std() is not None for r in results)
        if not measured and not (
            metric == "train_error" and any(r.metric == metric for r in results)
        ):
            continue  # no group of runs: its spread, and so its claims, are not calibrated
        modelled = None if measured else test_sigma
        found, sigma, tau, used = metric_references(results, recipe, metric, modelled=modelled)
        refs |= found
        how = (
            "by the same estimators from the records of that metric"
            if measured
            else f"no source gives a spread of training errors: the conservative model "
            f"sigma_run = max({sigma:.3f}, {RELATIVE_TRAIN_SPREAD:g} x the net's training "
            "error) (docs/tolerance-model.md)"
        )
        sources = sorted({r.source for r in results if r.metric == metric and r.recipe == recipe})
        lines.append(
            f"{metric.replace('_', ' ')}: sigma_run = {sigma:.3f}, sigma_impl = {tau:.3f} "
            f"({used} cells), {how}; `{recipe}` sources: {', '.join(sources) or 'none'}"
        )
    return refs, lines


def published_calibration(preset: str, recipe: str, results: list[Result]) -> Calibration:
    """References for ``recipe`` from published reruns (module docstring for the estimators)."""
    offset = selection_offset(results)
    refs, sigma, tau, used = metric_references(results, recipe, "test_error", offset)
    tests = [r for r in results if r.metric == "test_error"]
    _, dof = pooled_run_sigma(tests)
    recipes = " and ".join(sorted({r.recipe for r in tests} - {OTHER_RECIPE}))
    groups = "; ".join(
        f"{r.model} in {r.source}: k={r.k}, s={r.sample_std():.3f}"
        for r in tests
        if r.sample_std() is not None
    )
    others, other_lines = _other_metrics(results, recipe, sigma)
    derivation = (
        f"sigma_run = {sigma:.3f} pp: pooled sample std of every published group of >= "
        f"{MIN_GROUP} runs ({dof} degrees of freedom: {groups}), floored per net at the "
        f"binomial standard error of its error rate on {TEST_IMAGES['official']:,} test images",
        f"sigma_impl = {tau:.3f} pp: DerSimonian-Laird between-source spread over {used} "
        f"(recipe, net) cells of the {recipes} recipes with two or more "
        "independent sources (sources with another recipe are listed but calibrate nothing: "
        "their spread is that of their recipes, not of implementations)",
        f"best-on-test numbers are raised by {offset:.3f} pp, the mean (final - best) gap of "
        "the sources that print both; best-of-k numbers are replaced by their source's mean",
        f"expected value per net: random-effects mean of the `{recipe}`-recipe sources",
        shared_offset_evidence(tests, offset, sigma, tau),
        *other_lines,
    )
    return Calibration(preset, f"published `{recipe}`-recipe reruns", refs | others, derivation)


MINI_KEYS = {"test_error": "final_test_error", "train_error": "final_train_error"}


def _mini_reference(model: str, metric: str, values: list[float]) -> Reference:
    """One model's reference from our own calibration seeds (same code: no between spread)."""
    mean = statistics.fmean(values)
    n = {"test_error": TEST_IMAGES["mini"], "train_error": TRAIN_IMAGES["mini"]}.get(metric)
    floor = binomial_floor(mean, n) if n else 0.0
    run = max(statistics.stdev(values), floor)
    var = run**2 / len(values)
    return Reference(model, metric, mean, run, 0.0, var, var, (MINI_CALIBRATION,))


def _numbers(values: list[Any]) -> list[float]:
    """``values`` as floats; one ReproError naming the file if any is not a finite number."""
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not ok or not all(math.isfinite(v) for v in values):
        raise ReproError(
            f"baselines/{MINI_CALIBRATION}.json has a value that is not a finite number; "
            "restore the file from the repository (git checkout baselines/)"
        )
    return [float(v) for v in values]


def _mini_tables(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The per-seed metrics and layer responses of the mini calibration, shape-checked."""
    per_seed, responses = doc.get("per_seed"), doc.get("layer_response", {})
    if isinstance(per_seed, dict) and isinstance(responses, dict):
        seeds_ok = all(
            isinstance(m, dict) and all(isinstance(s, dict) for s in m.values())
            for m in per_seed.values()
        )
        responses_ok = all(
            isinstance(m, dict) and isinstance(m.get("per_seed", {}), dict)
            for m in responses.values()
        )
        if seeds_ok and responses_ok:
            return per_seed, responses
    raise ReproError(
        f"baselines/{MINI_CALIBRATION}.json has no per_seed/layer_response tables of the "
        "expected shape; restore the file from the repository (git checkout baselines/)"
    )


def mini_calibration(preset: str, doc: dict[str, Any]) -> Calibration:
    """References for the `mini` preset from ``baselines/mini_calibration.json``."""
    refs = {}
    per_seed, responses = _mini_tables(doc)
    for model in sorted(set(per_seed) | set(responses)):
        series = {
            metric: _numbers([s[key] for s in per_seed.get(model, {}).values() if key in s])
            for metric, key in MINI_KEYS.items()
        }
        series["response_std"] = _numbers(
            list(responses.get(model, {}).get("per_seed", {}).values())
        )
        for metric, values in series.items():
            if len(values) >= 2:
                refs[(model, metric)] = _mini_reference(model, metric, values)
    derivation = (
        "expected value and sigma_run per net and metric: mean and sample std of this "
        "project's calibration seeds (baselines/mini_calibration.json), error rates floored at "
        f"the binomial standard error on {TEST_IMAGES['mini']:,} test / {TRAIN_IMAGES['mini']:,} "
        "training images",
        "sigma_impl = 0: the reference runs are this code itself",
    )
    return Calibration(preset, "this project's mini calibration seeds", refs, derivation)


def calibration_for(preset: str, basis: str) -> Calibration:
    """The calibration of a preset whose policy names ``basis`` ('published:<recipe>' or
    'mini_calibration')."""
    if basis == MINI_CALIBRATION:
        return mini_calibration(preset, load_baseline(MINI_CALIBRATION))
    kind, _, recipe = basis.partition(":")
    if kind != "published" or not recipe:
        raise ReproError(
            f"baselines/tolerances.json: preset {preset!r} has calibration {basis!r}; expected "
            "'published:<recipe>' or 'mini_calibration'"
        )
    results = load_results()
    cal = published_calibration(preset, recipe, results)
    sigma = pooled_run_sigma([r for r in results if r.metric == "test_error"])[0]
    evidence = final_evaluation_evidence(curve_noise(load_baseline(A_MARTYN_CURVES)), sigma)
    return replace(cal, derivation=(*cal.derivation, evidence))


# --- why the final evaluation, not an average of the last epochs (issue 22 item 4) ------------

A_MARTYN_CURVES = "a_martyn_curves"
LAST_PHASE_FROM = 124  # a-martyn's first epoch at lr 0.001 (after the drop at epoch 123, 48k it.)
AVERAGED_EPOCHS = 10  # the average considered: the last 10 evaluations of a run


@dataclass(frozen=True)
class CurveNoise:
    """Epoch-to-epoch noise of the test error in the last lr phase of published curves: the sd
    of the residuals around each curve's linear trend (pp, pooled), and their lag-1
    autocorrelation (pooled), over ``nets`` curves of ``epochs`` evaluations each."""

    sigma_epoch: float
    lag1: float
    nets: int
    epochs: int


def _last_phase(doc: dict[str, Any]) -> dict[str, list[float]]:
    """Each net's test error (pp) from LAST_PHASE_FROM on; one ReproError for a damaged file."""
    models = doc.get("models")
    entries = list(models.values()) if isinstance(models, dict) else []
    curves: list[Any] = [e.get("test_err") if isinstance(e, dict) else None for e in entries]
    if curves and all(_fractions(c) for c in curves):
        assert isinstance(models, dict)
        return {name: [100 * v for v in c[LAST_PHASE_FROM:]] for name, c in zip(models, curves)}
    raise ReproError(
        f"baselines/{A_MARTYN_CURVES}.json has no 'models' with test_err curves of fractions "
        f"longer than {LAST_PHASE_FROM + 2} epochs; restore the file from the repository "
        "(git checkout baselines/)"
    )


def _fractions(curve: Any) -> bool:
    """A list of finite numbers in [0, 1] that reaches past the last lr phase's start."""
    if not isinstance(curve, list) or len(curve) <= LAST_PHASE_FROM + 2:
        return False
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in curve)
    return numbers and all(math.isfinite(v) and 0 <= v <= 1 for v in curve)


def curve_noise(doc: dict[str, Any]) -> CurveNoise:
    """:class:`CurveNoise` of the curves of ``baselines/a_martyn_curves.json``."""
    squares = lagged = dof = 0.0
    phases = _last_phase(doc)
    for y in phases.values():
        xs = range(len(y))
        xm, ym = statistics.fmean(xs), statistics.fmean(y)
        slope = sum((x - xm) * (v - ym) for x, v in zip(xs, y)) / sum((x - xm) ** 2 for x in xs)
        res = [v - ym - slope * (x - xm) for x, v in zip(xs, y)]
        squares += sum(e * e for e in res)
        lagged += sum(a * b for a, b in zip(res, res[1:]))
        dof += len(y) - 2
    epochs = len(next(iter(phases.values())))
    return CurveNoise(math.sqrt(squares / dof), lagged / squares, len(phases), epochs)


def averaged_sigma_run(sigma_run: float, noise: CurveNoise, m: int = AVERAGED_EPOCHS) -> float:
    """sigma_run if a run's error were the mean of its last ``m`` evaluations: only the
    epoch-to-epoch part of the spread (sigma_epoch^2 of it) shrinks, by the AR(1) variance
    factor of a mean of ``m`` values with lag-1 autocorrelation ``noise.lag1``."""
    rho = noise.lag1
    factor = (1 + 2 * sum((1 - j / m) * rho**j for j in range(1, m))) / m
    seeds = max(0.0, sigma_run**2 - noise.sigma_epoch**2)
    return math.sqrt(seeds + noise.sigma_epoch**2 * factor)


def final_evaluation_evidence(noise: CurveNoise, sigma_run: float) -> str:
    """The derivation line that says why verdicts use the final evaluation (issue 22 item 4)."""
    averaged = averaged_sigma_run(sigma_run, noise)
    return (
        f"the final evaluation is used, not a mean of the last {AVERAGED_EPOCHS}: in the last "
        f"lr phase of {noise.nets} published curves ({A_MARTYN_CURVES}.json, {noise.epochs} "
        f"epochs each) the test error moves {noise.sigma_epoch:.3f} pp from epoch to epoch "
        f"around its trend, lag-1 autocorrelation {noise.lag1:.2f}; averaging would lower "
        f"sigma_run only from {sigma_run:.3f} to {averaged:.3f} pp (the seeds' spread is not "
        "epoch noise), and the references are final-epoch numbers"
    )


# --- operating characteristics ----------------------------------------------------------------


class Claim(TypedDict, total=False):
    """One claim of ``baselines/he2016_fig6_claims.json`` / ``he2016_fig7_claims.json``: an
    ordering (``higher`` > ``lower`` in ``metric``) or a threshold (``model``'s ``metric``
    ``above`` / ``below`` a bound), with the check it belongs to and whether it defines it."""

    id: str
    check: str
    defines: bool
    figure: str
    quote: str
    text: str
    metric: str
    higher: str
    lower: str
    kind: str
    model: str
    like: str
    above: float
    below: float


# Claims shown beside the measurements and never asserted, with why (issue 22 item 6).
SHOWN_KINDS = {
    "similar": "a similarity: the paper gives no bound that would make it testable",
    "unrun": "needs a run this preset does not train",
}

NORMAL = statistics.NormalDist()
SEEDS_SHOWN = (1, 5)  # the K at which `repro calibration` shows each claim by default
WORSE_PP = 1.0  # "a run whose mean error is 1 pp worse" (issue 12)
TRIALS = 20_000  # Monte Carlo draws per ordering claim (standard error <= 0.0036)
POWER = 0.8  # "the smallest shift each verdict detects with 80 % power" (issue 22)
MAX_SHIFT = 20.0  # pp: a shift not detected with POWER below this is reported as none


def band_z(target: float, nets: int) -> float:
    """z of the band that passes each of ``nets`` faithful nets with probability
    target ** (1 / nets), so that all of them pass together with ``target`` (Sidak)."""
    each = target ** (1 / max(1, nets))
    return NORMAL.inv_cdf((1 + each) / 2)


def tolerance_pass_probability(
    ref: Reference, k: int, z: float, shift: float = 0.0, deviations: int = 0
) -> float:
    """P(|mean of k seeds - expected| <= z * sd) when the run's true mean is expected + shift.
    The band is two-sided on purpose: a run far *better* than every faithful reproduction
    (a leak of the test set into training, a different data split) is as suspect as a worse
    one (docs/tolerance-model.md section 3)."""
    sd = ref.sd(k, deviations)
    return NORMAL.cdf(z - shift / sd) - NORMAL.cdf(-z - shift / sd)


def threshold_pass_probability(
    ref: Reference, k: int, bound: float, above: bool, shift: float = 0.0
) -> float:
    """P(the K-seed mean lies on the claimed side of ``bound``) when the run's true mean is
    the reference's plus ``shift``."""
    p_above = 1 - NORMAL.cdf((bound - ref.mean - shift) / ref.sd(k))
    return p_above if above else 1 - p_above


def _ordering_draws(higher: Reference, lower: Reference, k: int, seed: int) -> tuple[Any, Any]:
    """TRIALS x k seeds of both nets of one implementation (module docstring of the offsets)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(ref: Reference) -> Any:
        offset = rng.normal(0.0, math.sqrt(ref.mean_var_run), (TRIALS, 1))
        return ref.mean + offset + rng.normal(0.0, ref.sigma_run, (TRIALS, k))

    return draw(higher), draw(lower)


def _ordering_holds(a: Any, b: Any, k: int) -> float:
    """The fraction of draws in which repro.claims.compare holds (mean and most seeds)."""
    holds = (a.mean(axis=1) > b.mean(axis=1)) & ((a > b).sum(axis=1) * 2 > k)
    return float(holds.mean())


def ordering_pass_probability(
    higher: Reference, lower: Reference, k: int, shift: float = 0.0, seed: int = 0
) -> float:
    """P(repro.claims.compare holds: higher's mean above lower's and higher in most of the k
    seeds) for nets drawn from their references; ``shift`` is added to the lower net (a run
    that much worse). Both nets come from one implementation, whose offset (sigma_impl) they
    share and which cancels: what remains is the uncertainty of the two expected values
    (their sources' run noise) and the seeds' noise."""
    a, b = _ordering_draws(higher, lower, k, seed)
    return _ordering_holds(a, b + shift, k)


def smallest_shift(fails: Callable[[float], float]) -> float | None:
    """The smallest shift (pp, towards failing) at which ``fails`` reaches POWER, by bisection
    (``fails`` rises with the shift); None when not even MAX_SHIFT reaches it."""
    if fails(MAX_SHIFT) < POWER:
        return None
    lo, hi = 0.0, MAX_SHIFT
    for _ in range(30):  # 20 / 2^30 pp: far below any printed digit
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fails(mid) >= POWER else (mid, hi)
    return hi


def detectable_shift(ref: Reference, k: int, z: float, deviations: int = 0) -> float:
    """The smallest shift of a net's true mean error (pp, worse) that its tolerance check
    fails with probability POWER at ``k`` seeds."""
    shift = smallest_shift(lambda s: 1 - tolerance_pass_probability(ref, k, z, s, deviations))
    return MAX_SHIFT if shift is None else shift


@dataclass(frozen=True)
class Characteristic:
    """What one claim's verdict can detect at one preset, at each K of ``seeds``: P(pass |
    faithful), P(fail | 1 pp worse), the shift failed with POWER; asserted when a faithful run
    passes with the preset's probability at every K of ``seeds`` (a run is judged at its own K:
    ``seeds`` = (K,))."""

    claim: str
    label: str
    asserted: bool
    reason: str
    pass_faithful: tuple[float, ...] = ()
    fail_worse: tuple[float | None, ...] = ()
    detectable: tuple[float | None, ...] = ()  # the shift (pp) failed with POWER, at each K
    seeds: tuple[int, ...] = SEEDS_SHOWN

    def contradicted(self, target: float) -> bool:
        """A faithful run *fails* it with at least ``target`` at every K shown: the mirror image
        of an asserted claim, i.e. its direction contradicts its own calibration (issue 21)."""
        return bool(self.pass_faithful) and all(p <= 1 - target for p in self.pass_faithful)

    def asserted_at(self, target: float) -> tuple[int, ...]:
        """The K of ``seeds`` at which a faithful run passes with at least ``target``."""
        return tuple(k for k, p in zip(self.seeds, self.pass_faithful) if p >= target)


def _missing_reference(cal: Calibration | None, models: list[str], metric: str) -> str:
    if cal is None:
        return "the preset has no calibration"
    missing = [m for m in models if cal.reference(m, metric) is None]
    if not missing:
        return ""
    return f"no reference {metric.replace('_', ' ')} for {', '.join(missing)} in {cal.basis}"


def claim_metric(claim: Claim | dict[str, Any]) -> str:
    """The metric a claim compares: Fig. 7 claims compare response std."""
    return str(claim.get("metric", "response_std"))


def claim_fails(claim: Claim, cal: Calibration, k: int) -> Callable[[float], float]:
    """P(a run of ``k`` seeds fails the claim) as a function of a shift *towards failing*: the
    lower net of an ordering, or the net of a 'below' bound, that many pp worse (higher);
    the net of an 'above' bound that many pp lower. One set of draws per ordering (common
    random numbers), so the probability rises with the shift."""
    metric = claim_metric(claim)
    if claim.get("kind") == "threshold":
        ref = cal.references[(claim["model"], metric)]
        above = "above" in claim
        bound = float(claim["above"] if above else claim["below"])
        return lambda s: 1 - threshold_pass_probability(ref, k, bound, above, -s if above else s)
    a, b = _ordering_draws(
        cal.references[(claim["higher"], metric)], cal.references[(claim["lower"], metric)], k, 0
    )
    return lambda s: 1 - _ordering_holds(a, b + s, k)


def pass_probability(claim: Claim, cal: Calibration, k: int) -> float:
    """P(a faithful run of ``k`` seeds passes the claim)."""
    return 1 - claim_fails(claim, cal, k)(0.0)


def claim_models_of(claim: Claim) -> list[str]:
    """The nets a claim is about."""
    if claim.get("kind") in ("threshold", "unrun"):
        return [claim["model"]]
    if claim.get("kind") == "similar":
        return [claim["model"], claim["like"]]
    return [claim["higher"], claim["lower"]]


def _not_asserted_reason(seeds: tuple[int, ...], passes: tuple[float, ...], target: float) -> str:
    low = [f"K={k}: {p:.3f}" for k, p in zip(seeds, passes) if p < target]
    high = [f"K={k}" for k, p in zip(seeds, passes) if p >= target]
    if not low:
        return ""
    reason = f"a faithful run passes with P < {target} ({', '.join(low)})"
    return f"asserted on runs of {', '.join(high)} seeds only: {reason}" if high else reason


def characterise(
    claim: Claim, cal: Calibration | None, target: float, seeds: tuple[int, ...] = SEEDS_SHOWN
) -> Characteristic:
    """A claim's operating characteristics at one preset and each K of ``seeds``; asserted
    only when a faithful run passes with at least ``target`` at every K of ``seeds``."""
    metric, label = claim_metric(claim), claim_label(claim)
    if claim.get("kind") in SHOWN_KINDS:
        return Characteristic(claim["id"], label, False, SHOWN_KINDS[claim["kind"]], seeds=seeds)
    missing = _missing_reference(cal, claim_models_of(claim), metric)
    if missing or cal is None:
        return Characteristic(claim["id"], label, False, missing, seeds=seeds)
    fails = [claim_fails(claim, cal, k) for k in seeds]
    passes = tuple(1 - f(0.0) for f in fails)
    is_error = metric.endswith("_error")
    worse = tuple(f(WORSE_PP) if is_error else None for f in fails)
    shifts = tuple(smallest_shift(f) for f in fails) if is_error else ()
    reason = _not_asserted_reason(seeds, passes, target)
    return Characteristic(claim["id"], label, not reason, reason, passes, worse, shifts, seeds)


def claim_label(claim: Claim) -> str:
    """'plain56 > plain20 (test error)' or 'plain110 test error > 60'."""
    metric = claim_metric(claim).replace("_", " ")
    if claim.get("kind") == "similar":
        return f"{claim['model']} ≈ {claim['like']} ({metric})"
    if claim.get("kind") == "unrun":
        return f"{claim['model']}: {claim.get('text', claim['id'])}"
    if claim.get("kind") == "threshold":
        side = ">" if "above" in claim else "<"
        return f"{claim['model']} {metric} {side} {claim.get('above', claim.get('below'))}"
    return f"{claim['higher']} > {claim['lower']} ({metric})"


def tolerance_characteristics(
    cal: Calibration | None,
    models: list[str],
    target: float,
    deviations: int = 0,
    seeds: tuple[int, ...] = SEEDS_SHOWN,
) -> list[Characteristic]:
    """Table 6-style tolerance per net: the band passes all compared nets together with
    ``target``; P(fail) when one net's mean error is 1 pp worse. ``deviations``: declared."""
    refs = [cal.reference(m, "test_error") if cal else None for m in models]
    z = band_z(target, sum(r is not None for r in refs))
    out = []
    for model, ref in zip(models, refs):
        label = f"{model} test error within the band"
        if ref is None:
            reason = _missing_reference(cal, [model], "test_error")
            out.append(Characteristic(f"tolerance_{model}", label, False, reason, seeds=seeds))
            continue
        passes = tuple(tolerance_pass_probability(ref, k, z, 0.0, deviations) for k in seeds)
        worse = tuple(
            1 - tolerance_pass_probability(ref, k, z, WORSE_PP, deviations) for k in seeds
        )
        shifts = tuple(detectable_shift(ref, k, z, deviations) for k in seeds)
        out.append(
            Characteristic(f"tolerance_{model}", label, True, "", passes, worse, shifts, seeds)
        )
    return out


@dataclass(frozen=True)
class PowerBudget:
    """Why a tolerance check detects what it does: the variance of a faithful K-seed mean
    around the expected value, term by term (pp^2), and P(fail | WORSE_PP worse) at K and in
    the limit of infinitely many seeds (only the seeds' term shrinks with K)."""

    seeds: float
    impl: float
    expected: float
    fail_worse: float
    fail_worse_limit: float


def power_budget(ref: Reference, k: int, z: float, deviations: int = 0) -> PowerBudget:
    """The variance terms of ``ref``'s band at ``k`` seeds and what they let the check detect."""
    seeds, impl = ref.sigma_run**2 / k, ref.sigma_impl**2 * (1 + deviations)
    limit = Reference(ref.model, ref.metric, ref.mean, 0.0, ref.sigma_impl, ref.mean_var, 0.0, ())
    return PowerBudget(
        seeds,
        impl,
        ref.mean_var,
        1 - tolerance_pass_probability(ref, k, z, WORSE_PP, deviations),
        1 - tolerance_pass_probability(limit, 1, z, WORSE_PP, deviations),
    )
