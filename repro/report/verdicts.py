"""The acceptance verdicts on a reproduction run: completeness, degradation, residual cure, tolerance.

One implementation, used by ``acceptance/`` (pytest) and by ``repro report``. Each check returns a
:class:`Verdict` with a table of expected vs measured values. The orderings are the paper's Fig. 6
claims (He et al. 2016, Sec. 4.2), read from ``baselines/he2016_fig6_claims.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.baselines import load_baseline
from repro.report.summary import (
    SeedRun,
    expected_end,
    load_seed_run,
    mean_std,
    read_json,
    seed_metrics,
)
from repro.reproduce.presets import config_mismatch, get_experiment, get_preset

PASS, FAIL, SKIP = "pass", "fail", "skip"
REQUIRED_FIELDS = ("iteration", "train_error", "test_error")


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
        cells = [tuple(map(_fmt, self.header))] + [tuple(map(_fmt, r)) for r in self.rows]
        if not self.header:
            return ""
        widths = [max(len(c[i]) for c in cells) for i in range(len(self.header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The rows as a Markdown table."""
        if not self.header:
            return ""
        out = ["| " + " | ".join(map(_fmt, self.header)) + " |"]
        out.append("|" + "---|" * len(self.header))
        out += ["| " + " | ".join(map(_fmt, r)) + " |" for r in self.rows]
        return "\n".join(out)

    def __str__(self) -> str:
        return f"{self.name}: {self.status.upper()} - {self.reason}\n{self.table()}"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.2f}"
    return "-" if x is None else str(x)


@dataclass
class RunSet:
    """A reproduction run directory: experiment, preset, seeds and every model/seed run."""

    root: Path
    experiment: str
    preset: str
    seeds: list[int]
    runs: dict[str, dict[int, SeedRun]]

    def values(self, model: str, key: str) -> list[float | None]:
        """One metric for every seed of a model, in seed order (None where missing)."""
        return (
            [seed_metrics(self.runs[model][s])[key] for s in self.seeds]
            if model in self.runs
            else []
        )


def load_runset(root: str | Path) -> RunSet:
    """Read a run directory written by `repro reproduce` (its summary.json names the matrix)."""
    root = Path(root)
    meta = read_json(root / "summary.json")
    experiment, preset = meta.get("experiment"), meta.get("preset")
    get_preset(str(preset))
    models = list(get_experiment(str(experiment)))
    seeds = [int(s) for s in meta.get("seeds") or [0]]
    runs = {m: {s: load_seed_run(root / m / f"seed{s}") for s in seeds} for m in models}
    return RunSet(root, str(experiment), str(preset), seeds, runs)


def preset_policy(preset: str) -> dict[str, Any]:
    """The tolerance/check policy of a preset from ``baselines/tolerances.json``."""
    return load_baseline("tolerances")["presets"][preset]


# --- completeness --------------------------------------------------------------------------


def _run_problems(run: SeedRun, model: str, seed: int, preset: str) -> list[str]:
    problems = list(run.problems)
    cfg = run.config
    if cfg is None:
        return problems or ["no config.json"]
    p = get_preset(preset)
    problems += config_mismatch(cfg, p, model, seed)
    if p.needs_full_data and cfg.get("data_official") is not True:
        problems.append("trained on a subset, preset needs the official data")
    for i, row in enumerate(run.metrics):
        for key in REQUIRED_FIELDS:
            if row.get(key) is None:
                problems.append(f"evaluation {i + 1} has no {key}")
        for key, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                problems.append(f"evaluation {i + 1} (iteration {row.get('iteration')}): {key}={v}")
    if not run.metrics:
        problems.append("no evaluations in metrics.jsonl")
        return problems
    end = expected_end(cfg)
    last = run.metrics[-1].get("iteration")
    if end is None:
        problems.append("config has no total_iterations")
    elif last != end:
        problems.append(f"last evaluation at iteration {last}, schedule ends at {end}")
    every = cfg.get("eval_every")
    prev = 0
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


def check_completeness(rs: RunSet) -> Verdict:
    """Every model/seed finished its schedule, metrics are finite, config matches the preset."""
    rows, bad = [], 0
    for model, seeds in rs.runs.items():
        for seed, run in seeds.items():
            problems = _run_problems(run, model, seed, rs.preset)
            last = run.metrics[-1].get("iteration") if run.metrics else None
            end = expected_end(run.config) if run.config else None
            bad += bool(problems)
            rows.append((model, seed, end, last, "ok" if not problems else "; ".join(problems[:3])))
    status = PASS if bad == 0 else FAIL
    reason = (
        f"all {len(rows)} runs finished their schedule"
        if not bad
        else f"{bad} of {len(rows)} runs incomplete or inconsistent"
    )
    return Verdict("completeness", status, reason, ("model", "seed", "end", "last", "status"), rows)


# --- orderings (Fig. 6 claims) -------------------------------------------------------------

TRAIN_KEYS = ("final_train_error", "last10_train_error")
TEST_KEYS = ("final_test_error",)


def _ordering_rows(
    rs: RunSet, claims: list[dict[str, Any]], not_asserted: dict[str, str]
) -> tuple[list[tuple], list[str]]:
    """One row per claim and metric; a claim the preset does not assert is shown, never failed."""
    rows, failed = [], []
    for claim in claims:
        hi, lo = claim["higher"], claim["lower"]
        keys = TRAIN_KEYS if claim["metric"] == "train_error" else TEST_KEYS
        for key in keys:
            h, l_ = rs.values(hi, key), rs.values(lo, key)
            pairs = [(a, b) for a, b in zip(h, l_) if a is not None and b is not None]
            mh, ml = mean_std(h)["mean"], mean_std(l_)["mean"]
            wins = sum(a > b for a, b in pairs)
            ok_mean = mh is not None and ml is not None and mh > ml
            ok_seeds = len(pairs) == len(rs.seeds) and wins * 2 > len(rs.seeds)
            ok = ok_mean and ok_seeds
            verdict = "ok" if ok else "FAIL"
            if claim["id"] in not_asserted:
                verdict = f"not asserted ({'holds' if ok else 'does not hold'})"
            elif not ok:
                failed.append(f"{hi} > {lo} on {key}")
            rows.append((f"{hi} > {lo}", key, mh, ml, f"{wins}/{len(rs.seeds)}", verdict))
    return rows, failed


def _ordering_check(rs: RunSet, name: str, prefixes: tuple[str, ...]) -> Verdict:
    header = ("claim", "metric", "higher (mean)", "lower (mean)", "seeds holding", "verdict")
    policy = preset_policy(rs.preset)
    if name not in policy["checks"]:
        return Verdict(name, SKIP, f"not asserted for preset {rs.preset}: {policy.get('why', '')}")
    claims = [
        c
        for c in load_baseline("he2016_fig6_claims")["claims"]
        if c["id"].startswith(prefixes) and c["higher"] in rs.runs and c["lower"] in rs.runs
    ]
    if not claims:
        return Verdict(name, SKIP, f"experiment {rs.experiment} has none of the models it compares")
    skipped = policy.get("not_asserted", {})
    rows, failed = _ordering_rows(rs, claims, skipped)
    note = _not_asserted_note(skipped, [c["id"] for c in claims])
    if failed:
        return Verdict(name, FAIL, "does not hold: " + ", ".join(failed) + note, header, rows)
    return Verdict(name, PASS, "holds on the means and in most seeds" + note, header, rows)


def _not_asserted_note(not_asserted: dict[str, str], claim_ids: list[str]) -> str:
    """The preset's reasons for the claims it measures but does not assert (empty if none)."""
    why = [f"{cid}: {not_asserted[cid]}" for cid in claim_ids if cid in not_asserted]
    return f"; not asserted at this preset: {'; '.join(why)}" if why else ""


def check_degradation(rs: RunSet) -> Verdict:
    """Plain-56 has higher training (final, last-10%) and test error than plain-20 (Fig. 6)."""
    return _ordering_check(rs, "degradation", ("degradation_",))


def check_residual(rs: RunSet) -> Verdict:
    """ResNet-56 beats plain-56 on train and test error, and beats ResNet-20 on test error."""
    return _ordering_check(rs, "residual", ("residual_cure_", "resnet_depth_gain"))


# --- tolerance -----------------------------------------------------------------------------


def baseline_for(model: str, files: list[str]) -> dict[str, Any] | None:
    """The first baseline number for ``model``: value, runs behind it, selection, source."""
    for name in files:
        data = load_baseline(name)
        entry = data.get("models", {}).get(model)
        if not entry or "test_error" not in entry:
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


def check_tolerance(rs: RunSet) -> Verdict:
    """|mean final test error - published number| within the preset's stated tolerance."""
    policy = preset_policy(rs.preset)
    if "tolerance" not in policy["checks"]:
        return Verdict("tolerance", SKIP, f"not asserted for preset {rs.preset}: {policy['why']}")
    header = ("model", "measured (mean)", "seeds", "baseline", "source", "|delta|", "tolerance",
              "verdict")  # fmt: skip
    rows, failed, compared = [], [], 0
    for model in rs.runs:
        base = baseline_for(model, policy["baselines"])
        vals = [v for v in rs.values(model, "final_test_error") if v is not None]
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
        rows.append((model, measured, len(vals), base["value"], base["source"], delta, tol,
                     "ok" if ok else "FAIL"))  # fmt: skip
    if not compared:
        return Verdict("tolerance", SKIP, "no model of this experiment has a published number",
                       header, rows)  # fmt: skip
    if failed:
        return Verdict("tolerance", FAIL, "outside tolerance: " + ", ".join(failed), header, rows)
    return Verdict("tolerance", PASS, f"{compared} models within tolerance", header, rows)


# --- layer responses (Fig. 7 claims) -------------------------------------------------------

LAYER_RESPONSE_FILE = "layer_response.json"


def check_layer_response(rs: RunSet) -> Verdict:
    """Mean response std: ResNet < plain at equal depth, ResNet-56 < ResNet-20 (Fig. 7)."""
    policy = preset_policy(rs.preset)
    if "layer_response" not in policy["checks"]:
        why = policy.get("layer_response_why", policy.get("why", ""))
        return Verdict("layer_response", SKIP, f"not asserted for preset {rs.preset}: {why}")
    path = rs.root / LAYER_RESPONSE_FILE
    if not path.is_file():
        return Verdict("layer_response", SKIP,
                       f"no {LAYER_RESPONSE_FILE}: run `repro analyze layer-response {rs.root}`")  # fmt: skip
    models = read_json(path).get("models", {})
    header = ("claim", "higher (mean)", "lower (mean)", "seeds holding", "verdict")
    not_asserted = policy.get("not_asserted", {})
    rows, failed = [], []
    for claim in load_baseline("he2016_fig7_claims")["claims"]:
        hi, lo = claim["higher"], claim["lower"]
        if hi not in rs.runs or lo not in rs.runs:
            continue
        per_seed = {
            m: {
                int(k.removeprefix("seed")): v["mean_std"]
                for k, v in models.get(m, {}).get("seeds", {}).items()
            }
            for m in (hi, lo)
        }
        pairs = [(per_seed[hi].get(s), per_seed[lo].get(s)) for s in rs.seeds]
        complete = all(a is not None and b is not None for a, b in pairs)
        wins = sum(a > b for a, b in pairs if a is not None and b is not None)
        mh, ml = (models.get(m, {}).get("mean_std") for m in (hi, lo))
        ok = complete and mh is not None and ml is not None and mh > ml and wins * 2 > len(pairs)
        verdict = "ok" if ok else "FAIL"
        if claim["id"] in not_asserted:
            verdict = f"not asserted ({'holds' if ok else 'does not hold'})"
        elif not ok:
            failed.append(f"{hi} > {lo}")
        rows.append((f"{hi} > {lo}", mh, ml, f"{wins}/{len(pairs)}", verdict))
    if not rows:
        return Verdict("layer_response", SKIP, f"experiment {rs.experiment} compares no pair")
    ids = [c["id"] for c in load_baseline("he2016_fig7_claims")["claims"]]
    note = _not_asserted_note(not_asserted, ids)
    if failed:
        reason = "does not hold: " + ", ".join(failed) + note
        return Verdict("layer_response", FAIL, reason, header, rows)
    return Verdict(
        "layer_response", PASS, "holds on the means and in most seeds" + note, header, rows
    )


CHECKS = (
    check_completeness,
    check_degradation,
    check_residual,
    check_tolerance,
    check_layer_response,
)


def all_verdicts(rs: RunSet) -> list[Verdict]:
    """Every check, in order."""
    return [check(rs) for check in CHECKS]
