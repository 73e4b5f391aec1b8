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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from repro.baselines import load_baseline
from repro.calibration import (
    SEEDS_SHOWN,
    SHOWN_KINDS,
    Calibration,
    Characteristic,
    Claim,
    band_z,
    calibration_for,
    characterise,
    claim_label,
    claim_models_of,
    tolerance_characteristics,
)
from repro.errors import ReproError
from repro.experiments import (
    PRESETS,
    config_mismatch,
    declared_amp,
    get_experiment,
    get_preset,
    settings_for,
)
from repro.fileio import NUMBER, wrong_types
from repro.matrix_summary import mean_std, seed_metrics
from repro.store import (
    CONFIG,
    FINAL,
    LAYER_RESPONSE_JSON,
    Matrix,
    Run,
    expected_end,
    file_digest,
    load_run,
    read_layer_response,
)
from repro.tables import markdown_table, text_table

PASS, FAIL, SKIP, INCONCLUSIVE = "pass", "fail", "skip", "inconclusive"
# A claim that needs data an imported run lacks (`repro import-run`): never a pass.
NOT_ASSESSABLE = "not assessable"
# A check whose defining claims (``"defines": true`` in the claims data) the preset cannot assert:
# no claim of it asserted (NOT_ASSESSED), or only claims that do not define it (PARTIAL). Never
# a pass (issue 22): "degradation" means plain-56 *trains* worse than plain-20, whatever else holds.
NOT_ASSESSED, PARTIAL = "not assessed", "partial"
FIG6, FIG7 = "he2016_fig6_claims", "he2016_fig7_claims"
CLAIM_FILES = (FIG6, FIG7)
REQUIRED_FIELDS = ("iteration", "train_error", "test_error")
TRAIN_KEYS = ("final_train_error", "last10_train_error")
TEST_KEYS = ("final_test_error",)


@dataclass(frozen=True)
class ClaimOutcome:
    """One claim of a check on one run: asserted at the preset or only shown, and whether it
    holds (None: not assessable, e.g. an import lacks the metric)."""

    claim: str
    defines: bool
    asserted: bool
    holds: bool | None


@dataclass
class Verdict:
    """The outcome of one check and the table that explains it."""

    name: str
    status: str
    reason: str
    header: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    outcomes: list[ClaimOutcome] = field(default_factory=list)

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
    "calibration": (str,),
    "pass_probability": (NUMBER,),
    "why": (str,),
    "layer_response_why": (str,),
    "declared_deviations": (list,),
}
CLAIM_TYPES: dict[str, tuple[Any, ...]] = {
    k: (str,)
    for k in (
        "id",
        "higher",
        "lower",
        "metric",
        "model",
        "like",
        "kind",
        "quote",
        "figure",
        "check",
    )
} | {"above": (NUMBER,), "below": (NUMBER,), "defines": (bool,)}


def _checked(name: str, where: str, obj: Any, spec: dict[str, tuple[Any, ...]], needs=()) -> Any:
    """``obj`` if it is an object with ``needs`` and the types of ``spec``; else one ReproError
    naming the baseline file (the claims never meet a malformed baseline)."""
    problems = [f"{where} is not an object"] if not isinstance(obj, Mapping) else []
    if not problems:
        problems = [f"{where} has no {k!r}" for k in needs if k not in obj]
        problems += wrong_types(obj, spec, where)
    if problems:
        raise ReproError(
            f"baselines/{name}.json: {problems[0]}; restore the file from the "
            "repository (git checkout baselines/)"
        )
    return obj


def preset_policy(preset: str) -> Mapping[str, Any]:
    """The check policy of a preset (``repro.experiments.settings_for``): its entry in
    ``baselines/tolerances.json``, else the one registered with it, else the documented default
    (completeness only); validated."""
    raw = settings_for(preset).policy  # a damaged tolerances.json: ReproError there
    policy = _checked("tolerances", f"presets.{preset}", raw, POLICY_TYPES, ("checks",))
    lists = (policy["checks"], policy.get("declared_deviations", []))
    probability = policy.get("pass_probability", 0.5)
    if not all(isinstance(x, str) for x in (*lists[0], *lists[1])) or not 0 < probability < 1:
        raise ReproError(
            f"baselines/tolerances.json: presets.{preset} needs lists of names and a "
            "pass_probability between 0 and 1; restore the file from the repository "
            "(git checkout baselines/)"
        )
    if set(policy["checks"]) - {"completeness"}:
        needs = ("calibration", "pass_probability")
        _checked("tolerances", f"presets.{preset}", policy, POLICY_TYPES, needs)
    return policy


def checked_characteristic(
    claim: Claim, cal: Calibration | None, target: float, seeds: tuple[int, ...] = SEEDS_SHOWN
) -> Characteristic:
    """The claim's operating characteristics at each K of ``seeds``; one ReproError when a
    faithful full-scale run (a published calibration) would fail it with at least ``target``
    at every K: then the claims data, not the run, is wrong (a direction flipped), and quietly
    not asserting it would hide that. The `mini` subset's short schedule may truly reverse a
    claim (ResNet-56 trains worse than ResNet-20 there): shown as not asserted, not an error."""
    ch = characterise(claim, cal, target, seeds)
    if cal is not None and cal.basis.startswith("published") and ch.contradicted(target):
        where = "baselines/he2016_fig6_claims.json or he2016_fig7_claims.json"
        probabilities = ", ".join(f"{p:.3f}" for p in ch.pass_faithful)
        raise ReproError(
            f"{where}: claim {claim['id']!r} ({ch.label}) is contradicted by its own "
            f"calibration ({cal.basis if cal else '-'}): a faithful run passes it with P = "
            f"{probabilities}; its direction is wrong: restore the file from the repository "
            "(git checkout baselines/)"
        )
    return ch


@dataclass(frozen=True)
class Policy:
    """Everything one preset's verdicts rest on, built once (:func:`policy_for`) and handed to
    every check and to the report (issue 22 item 7): the checks it runs, its calibration and
    pass probability, its declared deviations, and the claims of each check."""

    preset: str
    checks: tuple[str, ...]
    calibration: Calibration | None
    target: float
    why: str = ""
    layer_response_why: str = ""
    declared: tuple[str, ...] = ()
    claims: Mapping[str, tuple[Claim, ...]] = field(default_factory=dict)  # by claims file

    def of_check(self, name: str, check: str) -> list[Claim]:
        """The claims of ``baselines/<name>.json`` that belong to ``check``."""
        return [c for c in self.claims.get(name, ()) if c["check"] == check]

    def defining(self, name: str, check: str) -> list[str]:
        """Ids of the claims that define ``check`` (``"defines": true`` in the claims data)."""
        return [c["id"] for c in self.of_check(name, check) if c.get("defines")]

    def not_asserted(self, claims: list[Claim], k: int) -> dict[str, str]:
        """Claim id -> why the preset shows it without asserting it on a run of ``k`` seeds (a
        faithful ``k``-seed run would pass with less than the pass probability, or there is no
        reference); the claims it asserts at ``k`` are absent."""
        out = {}
        for claim in claims:
            ch = checked_characteristic(claim, self.calibration, self.target, (max(1, k),))
            if not ch.asserted:
                out[claim["id"]] = ch.reason
        return out


def policy_for(preset: str) -> Policy:
    """The :class:`Policy` of a preset from ``baselines/tolerances.json``, its calibration and
    the claims files (each read once)."""
    raw = preset_policy(preset)
    cal = calibration_for(preset, raw["calibration"]) if "calibration" in raw else None
    target = float(raw["pass_probability"]) if cal is not None else 1.0
    claims = {name: tuple(load_claims(name, metric=name == FIG6)) for name in CLAIM_FILES}
    return Policy(
        preset,
        tuple(raw["checks"]),
        cal,
        target,
        str(raw.get("why", "")),
        str(raw.get("layer_response_why", raw.get("why", ""))),
        tuple(str(d) for d in raw.get("declared_deviations", [])),
        MappingProxyType(claims),
    )


def _claim_needs(claim: Any) -> tuple[str, ...]:
    kind = claim.get("kind") if isinstance(claim, dict) else None
    if kind in ("threshold", "unrun"):
        return ("id", "check", "model", "metric")
    if kind == "similar":
        return ("id", "check", "model", "like", "metric")
    return ("id", "check", "higher", "lower")


def load_claims(name: str, metric: bool = False) -> list[Claim]:
    """The claims of ``baselines/<name>.json``: orderings (id, higher, lower) and thresholds
    (id, model, metric, above or below); Fig. 6's claims also name their ``metric``."""
    claims = _checked(name, "the file", load_baseline(name), {"claims": (list,)}, ("claims",))
    out = []
    for i, c in enumerate(claims["claims"]):
        needs = _claim_needs(c) + (("metric",) if metric else ())
        c = _checked(name, f"claim {i + 1}", c, CLAIM_TYPES, needs)
        if c.get("kind") == "threshold" and ("above" in c) == ("below" in c):
            raise ReproError(
                f"baselines/{name}.json: claim {i + 1} needs exactly one of 'above' and "
                "'below'; restore the file from the repository (git checkout baselines/)"
            )
        out.append(c)
    return out


def model_seeds(matrix: Matrix, model: str) -> list[int]:
    """The seeds that stand for ``model``, in order. In a matrix, the matrix's seeds: nets are
    compared seed by seed. In a run folder (imported runs, ``RUN_FOLDER``) each net's own seeds:
    another code base's seeds are labels, which may differ between nets, so compared nets are
    paired by rank (a folder of plain56 seed 1 and plain20 seed 0 compares the two)."""
    if matrix.experiment == RUN_FOLDER:
        return sorted(matrix.runs.get(model, {}))
    return list(matrix.seeds)


def seeds_per_net(matrix: Matrix) -> int:
    """The number of seeds a comparison rests on (what the calibration's power is computed for):
    the matrix's seeds, or in a run folder the fewest runs of any one net."""
    if matrix.experiment == RUN_FOLDER:
        return min((len(runs) for runs in matrix.runs.values()), default=0)
    return len(matrix.seeds)


def seed_values(matrix: Matrix, model: str, key: str) -> list[float | None]:
    """One metric for every seed of a model (:func:`model_seeds`), in order (None where
    missing)."""
    runs = matrix.runs.get(model)
    if not runs:
        return []
    return [seed_metrics(runs[s])[key] if s in runs else None for s in model_seeds(matrix, model)]


# A run folder, or a folder of them, without a summary.json (`repro import-run --model`): no
# experiment says which nets it should hold, so the claims its nets allow are judged and every
# other one is "not assessable". Judged with the preset its runs name, else `common` (the preset
# `repro import-run --experiment` gives a matrix by default).
RUN_FOLDER = "run folder"
RUN_FOLDER_PRESET = "common"


def experiment_models(matrix: Matrix) -> tuple[str, ...]:
    """The nets the matrix should hold: its experiment's, or a run folder's own."""
    if matrix.experiment == RUN_FOLDER:
        return tuple(matrix.runs)
    return get_experiment(matrix.experiment)


def run_folders(root: Path) -> list[Path]:
    """``root`` when it is one run (a config.json), else its ``*/`` and ``*/seed*/`` runs."""
    if (root / CONFIG).is_file():
        return [root]
    found = {p.parent for pat in (f"*/{CONFIG}", f"*/seed*/{CONFIG}") for p in root.glob(pat)}
    return sorted(found)


def run_folder_preset(runs: dict[str, dict[int, Run]]) -> str:
    """The comparable preset whose recipe every run's stated fields match (a 64k-iteration
    import is `paper`), else RUN_FOLDER_PRESET."""
    for name in (RUN_FOLDER_PRESET, *(p for p in PRESETS if p != RUN_FOLDER_PRESET)):
        if not PRESETS[name].comparable:
            continue
        if all(
            not [m for m in config_mismatch(r.config or {}, PRESETS[name], model, seed)
                 if not m.startswith("config has no")]
            for model, seeds in runs.items()
            for seed, r in seeds.items()
        ):  # fmt: skip
            return name
    return RUN_FOLDER_PRESET


def load_run_folder(root: Path) -> Matrix:
    """A run folder or a folder of runs as a :class:`Matrix` of experiment RUN_FOLDER; one
    ReproError when it holds no run or two runs of one net and seed."""
    runs: dict[str, dict[int, Run]] = {}
    for folder in run_folders(Path(root)):
        run = load_run(folder)
        model, seed = (run.config or {}).get("model"), (run.config or {}).get("seed")
        if not isinstance(model, str) or not isinstance(seed, int):
            raise ReproError(f"{folder / CONFIG} names no model and seed: {run.problems[:1]}")
        if seed in runs.get(model, {}):
            raise ReproError(
                f"{root} holds two runs of {model} seed {seed} ({runs[model][seed].path} and "
                f"{folder}): report them one at a time"
            )
        runs.setdefault(model, {})[seed] = run
    if not runs:
        raise ReproError(
            f"{Path(root) / 'summary.json'} is missing and {root} holds no config.json or run "
            "folders: give a `repro reproduce` folder, a run folder (`repro import-run ... "
            "--model M`) or a folder of them"
        )
    preset = run_folder_preset(runs)
    seeds = sorted({s for m in runs.values() for s in m})
    summary = {"experiment": RUN_FOLDER, "preset": preset, "seeds": seeds, "models": list(runs)}
    return Matrix(Path(root), RUN_FOLDER, preset, seeds, runs, summary)


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
    if verdict.status not in (PASS, FAIL, PARTIAL) or not waiting:
        return verdict
    reason = f"inconclusive (run not finished: {', '.join(waiting)}); so far: {verdict.reason}"
    return replace(verdict, status=INCONCLUSIVE, reason=reason)


def defining_claims(name: str, check: str) -> list[str]:
    """Ids of the claims of ``baselines/<name>.json`` that define ``check`` (``"defines"``)."""
    return [c["id"] for c in load_claims(name) if c["check"] == check and c.get("defines")]


def _ordering_verdict(
    name: str,
    table: tuple[tuple, list[tuple]],
    failed: list[str],
    note: str,
    outcomes: list[ClaimOutcome],
    defining: list[str],
) -> Verdict:
    """FAIL when an asserted claim fails; PASS only when every claim that defines the check is
    asserted and holds (and no asserted claim fails); else NOT ASSESSED or PARTIAL."""
    header, rows = table

    def verdict(status: str, reason: str) -> Verdict:
        return Verdict(name, status, reason + note, header, rows, outcomes)

    if failed:
        return verdict(FAIL, "does not hold: " + ", ".join(failed))
    missing = sorted({str(r[-1]) for r in rows if str(r[-1]).startswith(NOT_ASSESSABLE)})
    if missing:
        return verdict(NOT_ASSESSABLE, "; ".join(missing))
    held = [o.claim for o in outcomes if o.asserted]
    unasserted = [c for c in defining if c not in held]
    if not defining:
        return verdict(
            PARTIAL if held else NOT_ASSESSED,
            'the claims data names no claim that defines this check ("defines": true); '
            f"asserted and holding: {', '.join(held) or 'none'}",
        )
    if not held:
        return verdict(
            NOT_ASSESSED,
            "no claim of this check is asserted at this preset (shown, "
            f"measured); it is defined by {', '.join(defining)}",
        )
    if unasserted:
        return verdict(
            PARTIAL,
            f"the claim(s) that define this check ({', '.join(unasserted)}) "
            f"are not asserted here; asserted and holding: {', '.join(held)}",
        )
    return verdict(
        PASS,
        f"its defining claim(s) {', '.join(defining)} and every other asserted "
        "claim hold on the means and in most seeds",
    )


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
    elif end is None:
        problems.append(
            f"imported without its schedule's end (last evaluation at iteration {last}): "
            "import again with --total-iterations N"
        )
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
    if not run.finished and run.imported is not None:
        problems.append("the import does not say its schedule finished (import with --finished)")
    elif not run.finished:
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
    altered schedule is caught here, whatever the config says; so is a warm-up lr past its
    bound (``warmup_limit_iteration``: the first milestone). Imports are not checked."""
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
    limit = config.get("warmup_limit_iteration")  # absent: an old, unbounded warm-up
    for row in run.metrics:
        it, got = row["iteration"], row.get("lr")
        want = base * gamma ** sum(1 for m in marks if it - 1 >= m)  # the lr of step it - 1
        in_warmup = warming and (not isinstance(limit, int) or it - 1 < limit)
        if got is not None and in_warmup and math.isclose(got, config["warmup_lr"], rel_tol=1e-6):
            continue
        warming = False  # once the schedule's lr shows, the warm-up is over
        if got is None:
            return [f"evaluation at iteration {it} records no lr: the lr trace cannot be checked"]
        if not math.isclose(got, want, rel_tol=1e-6):
            return [f"lr {got} at iteration {it}, the recipe's step schedule says {want:.6g}"]
    return []


def check_completeness(matrix: Matrix, policy: Policy | None = None) -> Verdict:
    """Every model of the experiment and seed finished its schedule, with finite metrics and the
    preset's config (``policy``: unused, the signature every check shares)."""
    del policy
    rows: list[tuple[Any, ...]] = []
    bad = unassessed = 0
    for model in experiment_models(matrix):
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


def _threshold_row(matrix: Matrix, claim: Claim, key: str) -> tuple[tuple, bool]:
    """One row for 'model's metric above/below a bound' (mean over seeds, every seed present)."""
    values = seed_values(matrix, claim["model"], key)
    mean = mean_std(values)["mean"]
    above = "above" in claim
    bound = float(claim["above"] if above else claim["below"])
    inside = [v for v in values if v is not None and (v > bound if above else v < bound)]
    holds = mean is not None and None not in values and (mean > bound if above else mean < bound)
    label = f"{claim['model']} {'>' if above else '<'} {bound:g}"
    return (label, key, mean, bound, f"{len(inside)}/{len(values)}"), holds


def _shown_rows(matrix: Matrix, claim: Claim, not_asserted: dict[str, str]):
    """(rows, failed, outcome) of a claim that is shown, never asserted (SHOWN_KINDS): the
    measured means beside the reason; it counts as shown only."""
    key = "final_train_error" if claim["metric"] == "train_error" else "final_test_error"
    means = [mean_std(seed_values(matrix, m, key))["mean"] for m in claim_models_of(claim)]
    label = claim_label(claim)
    why = not_asserted.get(claim["id"], "shown only")
    row = (label, key, means[0], means[1] if len(means) > 1 else None, "-", f"shown: {why}")
    return [row], [], ClaimOutcome(claim["id"], bool(claim.get("defines")), False, None)


def _claim_rows(matrix: Matrix, claim: Claim, not_asserted: dict[str, str]):
    """(rows, failed, outcome) of one Fig. 6 claim, one row per metric key it is read from; the
    claim holds when it holds on every key."""
    if claim.get("kind") in SHOWN_KINDS:
        return _shown_rows(matrix, claim, not_asserted)
    metric = "train_error" if claim["metric"] == "train_error" else "test_error"
    missing = lacking(matrix, claim_models_of(claim), metric)
    rows, failed, held = [], [], []
    for key in TRAIN_KEYS if metric == "train_error" else TEST_KEYS:
        if claim.get("kind") == "threshold":
            row, holds = _threshold_row(matrix, claim, key)
        else:
            hi, lo = claim["higher"], claim["lower"]
            c = compare(seed_values(matrix, hi, key), seed_values(matrix, lo, key))
            row, holds = (
                (f"{hi} > {lo}", key, c.higher_mean, c.lower_mean, f"{c.wins}/{c.seeds}"),
                c.holds,
            )
        verdict = claim_verdict(claim["id"], holds, not_asserted)
        if missing:
            verdict = f"{NOT_ASSESSABLE}: no {metric} in {', '.join(missing)} (imported)"
        if verdict == "FAIL":
            failed.append(f"{row[0]} on {key}")
        rows.append((*row, verdict))
        held.append(holds)
    outcome = _outcome(claim, all(held) if not missing else None, not_asserted)
    return rows, failed, outcome


def _outcome(claim: Claim, holds: bool | None, not_asserted: dict[str, str]):
    asserted = claim["id"] not in not_asserted
    return ClaimOutcome(claim["id"], bool(claim.get("defines")), asserted, holds)


def _ordering_check(matrix: Matrix, name: str, policy: Policy | None) -> Verdict:
    header = ("claim", "metric", "higher / value", "lower / bound", "seeds holding", "verdict")
    policy = policy or policy_for(matrix.preset)
    if name not in policy.checks:
        return Verdict(name, SKIP, f"not asserted for preset {matrix.preset}: {policy.why}")
    of_check = policy.of_check(FIG6, name)
    claims = [c for c in of_check if all(m in matrix.runs for m in claim_models_of(c))]
    if not claims:
        return _no_claim_verdict(matrix, name, of_check)
    not_asserted = policy.not_asserted(claims, seeds_per_net(matrix))
    rows, failed, outcomes = [], [], []
    for claim in claims:
        claim_rows, claim_failed, outcome = _claim_rows(matrix, claim, not_asserted)
        rows += claim_rows
        failed += claim_failed
        outcomes.append(outcome)
    note = _not_asserted_note(not_asserted, [c["id"] for c in claims])
    models = {m for c in claims for m in claim_models_of(c)}
    defining = policy.defining(FIG6, name)
    result = _ordering_verdict(name, (header, rows), failed, note, outcomes, defining)
    return unless_unfinished(result, matrix, models)


def _no_claim_verdict(matrix: Matrix, name: str, of_check: list[Claim]) -> Verdict:
    """No claim of the check has all its nets here: SKIP when the experiment has none of them
    by design; else NOT ASSESSABLE, naming the nets its defining claims need that are missing."""
    allowed = set(experiment_models(matrix)) if matrix.experiment != RUN_FOLDER else None
    wanted = [c for c in of_check if allowed is None or set(claim_models_of(c)) <= allowed]
    imports = any(r.imported for seeds in matrix.runs.values() for r in seeds.values())
    if not wanted or not (imports or allowed is None):  # our own matrix: completeness says it
        return Verdict(
            name, SKIP, f"experiment {matrix.experiment} has none of the models it compares"
        )
    defining = [c for c in wanted if c.get("defines")] or wanted
    missing = sorted({m for c in defining for m in claim_models_of(c) if m not in matrix.runs})
    what = ", ".join(f"{c['id']} ({' vs '.join(claim_models_of(c))})" for c in defining)
    return Verdict(
        name,
        NOT_ASSESSABLE,
        f"{NOT_ASSESSABLE}: {', '.join(missing)} missing; {what} needs them (these runs "
        f"have {', '.join(matrix.runs) or 'no net'})",
    )


def check_degradation(matrix: Matrix, policy: Policy | None = None) -> Verdict:
    """Plain nets' training error rises with depth (defining: plain-56 trains worse than
    plain-20), plain-56 tests worse than plain-20, plain-110 errs above 60 % (Fig. 6 left)."""
    return _ordering_check(matrix, "degradation", policy)


def check_residual(matrix: Matrix, policy: Policy | None = None) -> Verdict:
    """ResNets cure the degradation (defining: ResNet-56 trains better than plain-56) and gain
    accuracy with depth up to 110; ResNet-1202 trains below 0.1 % yet tests worse than
    ResNet-110 (Fig. 6 middle and right)."""
    return _ordering_check(matrix, "residual", policy)


# --- tolerance -----------------------------------------------------------------------------


def declared_deviations(matrix: Matrix, model: str, policy: Policy | None = None) -> list[str]:
    """The deviations from the calibrating recipe that the preset (``declared_deviations`` in
    baselines/tolerances.json) or a run of ``model`` (a precision asked for explicitly)
    declares: each widens the band by one more between-implementation variance."""
    out = list((policy or policy_for(matrix.preset)).declared)
    asked = {
        f"amp={run.config.get('amp')} asked for"
        if declared_amp(run.config)
        else f"amp={run.config.get('amp')} by the recipe's default (the reruns trained in fp32)"
        for run in matrix.runs.get(model, {}).values()
        if run.config is not None and run.config.get("amp") not in (None, "off")
    }
    return out + sorted(asked)


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


TOLERANCE_HEADER = (
    "model",
    "measured (mean)",
    "seeds",
    "expected",
    "sources",
    "|delta|",
    "band",
    "verdict",
)


def _tolerance_row(
    matrix: Matrix, model: str, policy: Policy, z: float
) -> tuple[tuple[Any, ...], bool | None]:
    """One net's row and whether it is inside its band (None: no reference to compare with)."""
    vals = [v for v in seed_values(matrix, model, "final_test_error") if v is not None]
    measured = mean_std(vals)["mean"]
    ref = policy.calibration.reference(model, "test_error") if policy.calibration else None
    if ref is None:
        return (model, measured, len(vals), None, "no reference", None, None, "-"), None
    band = z * ref.sd(max(1, len(vals)), len(declared_deviations(matrix, model, policy)))
    delta = abs(measured - ref.mean) if measured is not None else None
    ok = delta is not None and delta <= band
    sources = ", ".join(ref.sources)
    row = (model, measured, len(vals), ref.mean, sources, delta, band, "ok" if ok else "FAIL")
    return row, ok


def check_tolerance(matrix: Matrix, policy: Policy | None = None) -> Verdict:
    """|mean final test error - expected| within the band derived from the reruns (Table 6;
    repro/calibration.py): all compared nets of a faithful run pass together with the
    preset's pass probability. Two-sided: a run far better than every faithful reproduction
    is as suspect as a worse one (docs/tolerance-model.md section 3)."""
    policy = policy or policy_for(matrix.preset)
    if "tolerance" not in policy.checks:
        return Verdict("tolerance", SKIP, f"not asserted for preset {matrix.preset}: {policy.why}")
    unstated = _unstated_data_or_recipe(matrix)
    if unstated is not None:
        return unstated
    cal, target = policy.calibration, policy.target
    assert cal is not None  # preset_policy requires a calibration with a tolerance check
    compared = [m for m in matrix.runs if cal.reference(m, "test_error") is not None]
    z = band_z(target, len(compared))
    rows, failed, outcomes = [], [], []
    for model in matrix.runs:
        row, ok = _tolerance_row(matrix, model, policy, z)
        rows.append(row)
        if ok is not None:
            outcomes.append(ClaimOutcome(f"tolerance_{model}", False, True, ok))
        if ok is False:
            failed.append(model)
    if not compared:
        return Verdict(
            "tolerance",
            SKIP,
            f"no model of this experiment has a reference in {cal.basis}",
            TOLERANCE_HEADER,
            rows,
        )
    if failed:
        reason = "outside the band: " + ", ".join(failed)
        verdict = Verdict("tolerance", FAIL, reason, TOLERANCE_HEADER, rows, outcomes)
    else:
        reason = (
            f"{len(compared)} models within their bands (z = {z:.2f}: a faithful run passes "
            f"all of them with P = {target})"
        )
        verdict = Verdict("tolerance", PASS, reason, TOLERANCE_HEADER, rows, outcomes)
    return unless_unfinished(verdict, matrix, matrix.runs)


# --- layer responses (Fig. 7 claims) -------------------------------------------------------


def _response_values(models: dict[str, Any], model: str, seeds: list[int]) -> list[float | None]:
    per_seed = models.get(model, {}).get("seeds", {})
    return [per_seed.get(f"seed{s}", {}).get("mean_std") for s in seeds]


def check_layer_response(matrix: Matrix, policy: Policy | None = None) -> Verdict:
    """Mean response std: ResNet < plain at equal depth, ResNet-56 < ResNet-20 (Fig. 7)."""
    policy = policy or policy_for(matrix.preset)
    if "layer_response" not in policy.checks:
        why = policy.layer_response_why
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
    claims = [
        c
        for c in policy.of_check(FIG7, "layer_response")
        if c["higher"] in matrix.runs and c["lower"] in matrix.runs
    ]
    not_asserted = policy.not_asserted(claims, seeds_per_net(matrix))
    stale = stale_responses(matrix, doc, {m for c in claims for m in (c["higher"], c["lower"])})
    if stale:
        return Verdict(
            "layer_response",
            FAIL,
            f"{LAYER_RESPONSE_JSON} does not belong to the "
            f"run's checkpoints ({'; '.join(stale[:3])}): run `repro analyze "
            f"layer-response {matrix.root}` again",
        )
    models = doc["models"]
    header = ("claim", "higher (mean)", "lower (mean)", "seeds holding", "verdict")
    rows, failed, outcomes = [], [], []
    for claim in claims:
        hi, lo = claim["higher"], claim["lower"]
        means = (models.get(hi, {}).get("mean_std"), models.get(lo, {}).get("mean_std"))
        c = compare(
            _response_values(models, hi, model_seeds(matrix, hi)),
            _response_values(models, lo, model_seeds(matrix, lo)),
            means,
        )
        verdict = claim_verdict(claim["id"], c.holds, not_asserted)
        if verdict == "FAIL":
            failed.append(f"{hi} > {lo}")
        rows.append((f"{hi} > {lo}", c.higher_mean, c.lower_mean, f"{c.wins}/{c.seeds}", verdict))
        outcomes.append(_outcome(claim, c.holds, not_asserted))
    if not rows:
        return Verdict("layer_response", SKIP, f"experiment {matrix.experiment} compares no pair")
    note = _not_asserted_note(not_asserted, [c["id"] for c in claims])
    involved = {m for c in claims for m in (c["higher"], c["lower"]) if m in matrix.runs}
    defining = policy.defining(FIG7, "layer_response")
    result = _ordering_verdict("layer_response", (header, rows), failed, note, outcomes, defining)
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


def all_verdicts(matrix: Matrix, policy: Policy | None = None) -> list[Verdict]:
    """Every check, in order, all under one policy (built here once when not given)."""
    policy = policy or policy_for(matrix.preset)
    return [check(matrix, policy) for check in CHECKS]


def claim_counts(verdicts: list[Verdict]) -> tuple[int, int, int]:
    """(asserted and holding, asserted and failing, shown only) over every claim of every
    verdict; a claim an import cannot assess counts as shown only."""
    outcomes = [o for v in verdicts for o in v.outcomes]
    holding = sum(o.asserted and o.holds is True for o in outcomes)
    failing = sum(o.asserted and o.holds is False for o in outcomes)
    return holding, failing, len(outcomes) - holding - failing


# `repro report`'s exit status: 0 every check the preset runs passed; 1 a check failed; 3 none
# failed but one is not assessed, partial, inconclusive or not assessable (never 0: issue 22).
EXIT_PASSED, EXIT_FAILED, EXIT_NOT_ALL_ASSESSED = 0, 1, 3


def exit_status(verdicts: list[Verdict]) -> int:
    """The exit status a set of verdicts gives (see EXIT_*); SKIP (a check the preset or the
    experiment does not run) is neither a pass nor a gap."""
    statuses = {v.status for v in verdicts}
    if FAIL in statuses:
        return EXIT_FAILED
    if statuses - {PASS, SKIP}:
        return EXIT_NOT_ALL_ASSESSED
    return EXIT_PASSED


# --- what the verdicts can detect (issue 12: operating characteristics) ----------------------


def operating_characteristics(
    preset: str,
    experiment: str,
    seeds: tuple[int, ...] = SEEDS_SHOWN,
    policy: Policy | None = None,
) -> list[tuple[str, Characteristic]]:
    """(check, characteristics) of every claim the experiment's nets allow, at this preset and
    each K of ``seeds``: asserted or not (and why; a run is judged at its own K), P(pass |
    faithful), P(fail | 1 pp worse) and the shift failed with 80 % power."""
    policy = policy or policy_for(preset)
    models = set(get_experiment(experiment))
    cal, target = policy.calibration, policy.target
    out = []
    for name in CLAIM_FILES:
        for claim in policy.claims[name]:
            if not set(claim_models_of(claim)) <= models:
                continue
            check = claim["check"]
            ch = checked_characteristic(claim, cal, target, seeds)
            if check not in policy.checks:
                ch = replace(ch, asserted=False, reason=f"preset {preset} does not run {check}")
            out.append((check, ch))
    if "tolerance" in policy.checks:
        nets = list(get_experiment(experiment))
        out += [
            ("tolerance", ch)
            for ch in tolerance_characteristics(cal, nets, target, len(policy.declared), seeds)
        ]
    return out
