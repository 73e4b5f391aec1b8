"""`repro report`: a Markdown report of one reproduction run, honest about what it is.

Headline: the final-evaluation test error (with the paper's 45k/5k split also the test error of the
evaluation chosen on validation); best-on-test is a labelled secondary number only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from repro.baselines import load_baseline
from repro.calibration import Calibration
from repro.claims import (
    PASS,
    RUN_FOLDER,
    Verdict,
    all_verdicts,
    claim_counts,
    load_run_folder,
    policy_for,
)
from repro.errors import ReproError
from repro.fileio import atomic_write
from repro.matrix_summary import refreshed_summary
from repro.recipes import RECIPE_FIELDS
from repro.report.calibration import trust_sections
from repro.report.plots import plot_curves
from repro.store import (
    LAYER_RESPONSE_JSON,
    LAYER_RESPONSE_PNG,
    SUMMARY,
    Matrix,
    load_matrix,
    read_layer_response,
    write_summary,
)
from repro.tables import markdown_table

CURVES_PNG = "curves.png"
MISSING = object()
# The recipe table: every recipe field (repro.recipes.Recipe), then how the run used it.
RECIPE_KEYS = (
    "recipe",
    *(f for f in RECIPE_FIELDS if f not in ("name", "source")),
    "total_iterations",
    "max_steps",
    "eval_every",
    "deterministic",
    "device",
    "amp",
    "channels_last",
    "compile",
)


def data_words(official: Any) -> str:
    """What is known of the data: official, a subset, or unknown (an import that does not say)."""
    return {True: "official CIFAR-10", False: "a subset of CIFAR-10"}.get(official, "unknown")


def imported_title(summary: dict[str, Any], complete: bool) -> str:
    """The title of imported runs: only what the import knows (data, recipe may be unknown)."""
    exp = summary["experiment"]
    if exp == RUN_FOLDER:
        exp += ": " + ", ".join(summary["models"])
    what = f"IMPORTED runs ({exp}) from another code base's logs"
    recipe = "stated" if summary.get("imported_recipe_known") else "unknown"
    done = "" if complete else ", not shown complete"
    return (
        f"{what}; data: {data_words(summary.get('data_official'))}, recipe: {recipe}{done} — "
        "not this project's reproduction, not comparable to the paper's numbers"
    )


def title_of(summary: dict[str, Any], complete: bool | None = None) -> str:
    """The report title; anything not comparable with the paper says so first. ``complete``:
    whether the completeness check passed (default: the summary's every-run-finished)."""
    preset, exp = summary["preset"], summary["experiment"]
    complete = summary.get("complete") if complete is None else complete
    if summary.get("imported_runs"):
        return imported_title(summary, bool(complete))
    counts = summary.get("data_counts") or {}
    n_train = sum(int(counts.get(k) or 0) for k in ("train", "val"))
    subset = summary.get("data_official") is not True
    if preset == "smoke":
        return (
            f"SMOKE run ({exp}): a few optimizer steps per model, a plumbing check — "
            "its numbers mean nothing and are not comparable to the paper's"
        )
    if preset == "mini":
        where = f"a {n_train:,}-image subset of CIFAR-10" if n_train else "a subset of CIFAR-10"
        where = "the official data with a shortened schedule" if not subset else where
        return f"MINI-SCALE run ({exp}) on {where} — not comparable to the paper's numbers"
    if subset:
        return (
            f"FORCED {preset.upper()} run ({exp}) on a SUBSET of CIFAR-10 — "
            "not comparable to the paper's numbers"
        )
    if not complete:
        return f"INCOMPLETE {preset} run ({exp}): not every model finished its schedule"
    return f"Reproduction of He et al. 2016 on CIFAR-10: {exp}, preset {preset}"


def _pm(stat: dict[str, Any]) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("std") is None:
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"


def paper_cell(entry: dict[str, Any]) -> str:
    """Table 6's headline (its best run), with the mean ± std over runs where it gives one:
    ResNet-110 is "6.43 (6.61 ± 0.16, 5 runs)"."""
    if entry.get("test_error") is None:
        return "-"
    if entry.get("test_error_mean") is None:
        return _num(entry["test_error"])
    spread = f" ± {entry['test_error_std']:.2f}" if entry.get("test_error_std") is not None else ""
    runs = f", {entry['runs']} runs" if entry.get("runs") else ""
    return f"{entry['test_error']:.2f} ({entry['test_error_mean']:.2f}{spread}{runs})"


def expected_cell(cal: Calibration | None, model: str) -> str:
    """The calibration's expected final test error for a net, with its sources' count."""
    ref = cal.reference(model, "test_error") if cal else None
    if ref is None:
        return "-"
    return f"{ref.mean:.2f} ({len(ref.sources)} source{'s' if len(ref.sources) > 1 else ''})"


def results_table(summary: dict[str, Any], comparable: bool, cal: Calibration | None) -> str:
    """Table 6-style: measured (final test error, mean ± std, every seed) vs the paper, and vs
    the value the preset's calibration ``cal`` expects (docs/tolerance-model.md)."""
    paper = load_baseline("he2016_table6")["models"]
    has_val = any(
        m["val_selected_test_error"]["mean"] is not None for m in summary["models"].values()
    )
    head = ["model", "final test err % (mean ± std)", "per seed"]
    head += ["val-selected test err %"] if has_val else []
    head += [
        "final train err %",
        "best-on-test % (selected on test)",
        "paper Table 6",
        "Δ vs paper",
        "expected at this preset",
    ]
    rows = []
    for model, m in summary["models"].items():
        final = m["final_test_error"]
        seeds = ", ".join(_num(s["final_test_error"]) for s in m["seeds"].values())
        entry = paper.get(model, {})
        p = entry.get("test_error_mean", entry.get("test_error"))  # a mean is compared with a mean
        delta = None if p is None or final["mean"] is None else final["mean"] - p
        shown = "n/a" if not comparable else "-" if delta is None else f"{delta:+.2f}"
        row = [model, _pm(final), seeds]
        row += [_pm(m["val_selected_test_error"])] if has_val else []
        row += [
            _pm(m["final_train_error"]),
            _pm(m["best_test_error"]),
            paper_cell(entry),
            shown,
            expected_cell(cal, model),
        ]
        rows.append(row)
    return markdown_table(head, rows)


def field_deviations(
    configs: list[dict[str, Any]], recipe: dict[str, Any] | None = None
) -> list[tuple[str, str, str, str]]:
    """(field, this run, paper, paper's words) for every config field of the paper's recipe
    record (``recipe``, default baselines/he2016_recipe.json) that some run departs from."""
    rows = []
    recipe = recipe or load_baseline("he2016_recipe")
    for key, entry in recipe["fields"].items():
        if entry.get("config") is False:
            continue
        got = set()
        for config in configs:
            want = entry["value"]
            if entry.get("models") == "resnet" and not str(config.get("model")).startswith(
                "resnet"
            ):
                want = None  # a plain net has no shortcut
            value = config.get(key, MISSING)
            if value is MISSING:
                got.add("unknown (not in the import)" if "imported" in config else "not recorded")
            elif value != want:
                got.add(repr(value))
        if got:
            rows.append((key, ", ".join(sorted(got)), repr(entry["value"]), entry["why"]))
    return rows


def deviations(configs: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """What the field table cannot say: the data, a cut schedule, --force, the headline."""
    out = []
    if summary.get("data_official") is None and summary.get("imported_runs"):
        out.append("data: unknown (the import does not say; `--set data_official=true|false`)")
    elif summary.get("data_official") is not True:
        counts = configs[0].get("data_counts") if configs else None
        out.append(f"data: a SUBSET of CIFAR-10 ({counts}), not the official 50k/10k")
    if any(c.get("max_steps") for c in configs):
        out.append(f"cut after max_steps={configs[0].get('max_steps')} optimizer steps")
    if summary.get("forced"):
        out.append("run with --force outside the conditions its preset requires")
    out.append(
        "headline metric: final-evaluation test error (the paper does not say which "
        "checkpoint Table 6 reports); best-on-test shown only as a labelled secondary "
        "number"
    )
    return out


def layer_response_section(run_dir: Path, out: Path) -> list[str]:
    """Fig. 7 figure and mean-std table when `repro analyze layer-response` wrote them."""
    lines: list[str] = []
    if (run_dir / LAYER_RESPONSE_PNG).is_file():
        shutil.copy2(run_dir / LAYER_RESPONSE_PNG, out / LAYER_RESPONSE_PNG)
        lines += [f"![layer responses]({LAYER_RESPONSE_PNG})", ""]
    try:
        doc = read_layer_response(run_dir)
        if doc is not None:
            shutil.copy2(run_dir / LAYER_RESPONSE_JSON, out / LAYER_RESPONSE_JSON)
            rows = [
                (
                    m.get("label", name),
                    f"{float(m['mean_std']):.4f}",
                    m.get("num_layers", "-"),
                    m.get("num_seeds", "-"),
                )
                for name, m in doc["models"].items()
            ]
            lines.append(markdown_table(("model", "mean response std", "layers", "seeds"), rows))
            if doc.get("definition"):
                lines += ["", f"Definition: {doc['definition']}."]
    except (ReproError, ValueError, KeyError, TypeError) as exc:
        lines.append(f"({LAYER_RESPONSE_JSON} could not be read: {type(exc).__name__}: {exc})")
    if not lines:
        return []
    return ["## Layer responses (Fig. 7)", "", *lines, ""]


def claims_summary_section(verdicts: list[Verdict]) -> list[str]:
    """The report's first lines after the title (issue 22): how many claims were asserted and
    hold, asserted and fail, or are shown only, and each check's status."""
    holding, failing, shown = claim_counts(verdicts)
    checks = " · ".join(f"{v.name} **{v.status.upper()}**" for v in verdicts)
    return [
        f"**Claims: {holding} asserted and holding · {failing} asserted and failing · "
        f"{shown} shown only (not asserted at this preset, or not assessable).** "
        "A check is PASS only when the claims that define it are asserted and hold.",
        "",
        f"Checks: {checks}",
        "",
    ]


def verdicts_section(verdicts: list[Verdict]) -> list[str]:
    md = ["## Verdicts", ""]
    for v in verdicts:
        md += [f"### {v.name}: {v.status.upper()}", "", v.reason, ""]
        if v.rows:
            md += [v.markdown(), ""]
    return md


def data_official_words(summary: dict[str, Any]) -> str:
    official = summary.get("data_official")
    if official is None and summary.get("imported_runs"):
        return "unknown (the import does not say)"
    return str(official)


def data_and_environment_section(summary: dict[str, Any]) -> list[str]:
    md = [
        "## Data",
        "",
        f"- official CIFAR-10: {data_official_words(summary)}",
        f"- counts: {summary.get('data_counts')}",
        f"- root: {summary.get('data_root')}",
        "",
        "## Environment",
        "",
    ]
    md += [f"- {k}: {v}" for k, v in (summary.get("environment") or {}).items()]
    md += [f"- training time (sum over runs): {summary.get('training_seconds', 0):.1f} s"]
    wall = summary.get("wall_seconds")
    at_once = f", {summary['parallel']} training(s) at once" if summary.get("parallel") else ""
    md += [f"- wall time of the last `repro reproduce` call{at_once}: {wall:.1f} s"] if wall else []
    return md + [""]


def header_section(
    summary: dict[str, Any], run_dir: Path, comparable: bool, completeness: Verdict
) -> list[str]:
    """Title, the not-the-paper's-numbers warning where it applies, what the run is; complete
    only when the completeness check passes."""
    complete = completeness.status == PASS
    md = [f"# {title_of(summary, complete)}", ""]
    if not summary.get("complete") and not summary.get("imported_runs"):
        md += ["> **INCOMPLETE.** Not every run of the matrix has finished: a verdict that rests "
               "on an unfinished run is inconclusive, not a result. Finish the matrix (the same "
               "`repro reproduce` command) and report again.", ""]  # fmt: skip
    if summary.get("imported_runs"):
        md += [
            "> **Not the paper's numbers.** Imported from another code base's logs: their "
            f"recipe is {'stated' if summary.get('imported_recipe_known') else 'unknown'}, "
            f"their data {data_words(summary.get('data_official'))}; the verdicts use preset "
            f"`{summary['preset']}`'s references; compare orderings, not values.",
            "",
        ]
    elif not comparable:
        what = summary.get("preset_description", summary["preset"])
        smoke = summary["preset"] == "smoke"
        use = "it proves the plumbing only" if smoke else "compare orderings, not values"
        md += [f"> **Not the paper's numbers.** This run is {what}; {use}.", ""]
    shown = "yes" if complete else f"no (completeness {completeness.status.upper()})"
    return md + [
        f"Run directory: `{run_dir}` · experiment `{summary['experiment']}` · preset "
        f"`{summary['preset']}` · seeds {summary['seeds']} · complete: {shown}",
        "",
    ]


def results_and_curves_section(
    summary: dict[str, Any], comparable: bool, cal: Calibration | None
) -> list[str]:
    return [
        "## Results (Table 6 style)",
        "",
        "Errors in %. Headline: **final-evaluation test error**; 'best-on-test' is the lowest "
        "test error seen during training, selected on the test set, so it is optimistic.",
        "",
        results_table(summary, comparable, cal),
        "",
        "## Training curves (Fig. 6 style)",
        "",
        f"![curves]({CURVES_PNG})",
        "",
        "Dashed: training error (augmented, train mode); bold: test error; mean over seeds.",
        "",
    ]


def recipe_section(
    configs: list[dict[str, Any]], summary: dict[str, Any], interpret: bool = True
) -> list[str]:
    """The deviations from the paper's recipe, derived field by field from the runs' configs,
    then the recipe as the (first) run resolved it."""
    config = configs[0] if configs else {}
    rows = [(k, str(config[k])) for k in RECIPE_KEYS if k in config]
    md = ["## Deviations from the paper", ""]
    recipe = load_baseline("he2016_recipe")
    fields = field_deviations(configs, recipe)
    if fields:
        head = ("field", "this run", "paper", "the paper's words")
        md += [markdown_table(head, fields), ""]
    md += [f"- {d}" for d in deviations(configs, summary)] + [""]
    md += interpretations_section(recipe) if interpret else []  # ours, not an import's
    return md + ["## Recipe", "", markdown_table(("field", "value"), rows), ""]


def interpretations_section(recipe: dict[str, Any] | None = None) -> list[str]:
    """How the recipe reads what the paper leaves open (he2016_recipe.json interpretations)."""
    notes = (recipe or load_baseline("he2016_recipe")).get("interpretations", {})
    lines = [f"- {key.replace('_', ' ')}: {text}" for key, text in notes.items() if key != "note"]
    if not lines:
        return []
    return ["### Interpretations where the paper is silent", "", *lines, ""]


def imported_section(matrix: Matrix) -> list[str]:
    """Where each imported run came from and what it lacks (nothing for this project's runs)."""
    rows = [
        (
            f"{m}/seed{s}",
            run.imported.get("source", "-"),
            run.imported.get("format", "-"),
            ", ".join(map(str, run.imported.get("lacks", []))) or "-",
        )
        for m, seeds in matrix.runs.items()
        for s, run in seeds.items()
        if run.imported
    ]
    if not rows:
        return []
    intro = (
        "Runs imported from another code base's logs with `repro import-run`: a claim that "
        "needs what an import lacks is shown as not assessable, never as a pass."
    )
    table = markdown_table(("run", "source", "format", "lacks"), rows)
    return ["## Imported runs", "", intro, "", table, ""]


def load_report_matrix(run_dir: Path) -> Matrix:
    """A `repro reproduce` (or `import-run --experiment`) folder by its summary.json; else a run
    folder or a folder of runs (`import-run --model`), judged on what its nets allow."""
    if run_dir.is_dir() and not (run_dir / SUMMARY).is_file():
        return load_run_folder(run_dir)
    return load_matrix(run_dir)


def report_summary(matrix: Matrix) -> dict[str, Any]:
    """The refreshed summary, with what imports state: whether runs are imported and whether
    every import states its recipe (``imported.unknown`` empty)."""
    summary = refreshed_summary(matrix)
    records = [r.imported for s in matrix.runs.values() for r in s.values() if r.imported]
    if records:
        summary["imported_runs"] = len(records)
        summary["imported_recipe_known"] = all(not rec.get("unknown") for rec in records)
    return summary


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.md``, ``summary.json`` and the PNGs to ``out``; returns the report path."""
    return write_report_verdicts(run_dir, out)[0]


def write_report_verdicts(
    run_dir: str | Path, out: str | Path | None = None
) -> tuple[Path, list[Verdict]]:
    """:func:`write_report`, also returning the verdicts it rendered (for the exit status)."""
    run_dir = Path(run_dir)
    matrix = load_report_matrix(run_dir)
    summary = report_summary(matrix)
    policy = policy_for(matrix.preset)  # once: every check and section uses it
    verdicts = all_verdicts(matrix, policy)
    out = Path(out) if out else Path("reports") / run_dir.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    completeness = next(v for v in verdicts if v.name == "completeness")
    complete = completeness.status == PASS
    comparable = bool(summary.get("comparable_to_paper") and complete)
    comparable = comparable and not summary.get("imported_runs")
    short = f"CIFAR-10 {summary['experiment']}, preset {summary['preset']}"
    short += "" if comparable else f" ({summary['preset'].upper()}: not comparable to the paper)"
    if summary.get("imported_runs"):
        short = f"imported: {', '.join(summary['models'])} (not comparable to the paper)"
    plot_curves({m: list(s.values()) for m, s in matrix.runs.items()}, out / CURVES_PNG, short)
    configs = [r.config for s in matrix.runs.values() for r in s.values() if r.config]
    md = header_section(summary, run_dir, comparable, completeness)
    md += claims_summary_section(verdicts)
    md += imported_section(matrix)
    md += results_and_curves_section(summary, comparable, policy.calibration)
    md += verdicts_section(verdicts) + layer_response_section(run_dir, out)
    if matrix.experiment != RUN_FOLDER:  # the power of the verdicts at the run's K (its nets)
        seeds = (max(1, len(matrix.seeds)),)
        md += trust_sections(matrix.preset, matrix.experiment, seeds, policy)
    md += recipe_section(configs, summary, interpret=not summary.get("imported_runs"))
    md += data_and_environment_section(summary)
    write_summary(out, summary)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text("\n".join(md), encoding="utf-8"))
    return out / "report.md", verdicts
