"""`repro report`: honest titles, Table 6-style results, verdicts, deviations, figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_runs import FAITHFUL, write_run

from repro.claims import policy_for
from repro.cli import main
from repro.errors import ReproError
from repro.report.report import title_of, write_report


def test_faithful_common_run_report_has_table_verdicts_and_curves(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", seeds=2)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(comparable_to_paper=True, wall_seconds=123.4, parallel=4)
    (run / "summary.json").write_text(json.dumps(summary))
    path = write_report(run, tmp_path / "rep")
    text = path.read_text()
    assert "wall time of the last `repro reproduce` call, 4 training(s) at once: 123.4 s" in text
    assert text.startswith("# Reproduction of He et al. 2016 on CIFAR-10: core, preset common")
    assert "Not the paper's numbers" not in text
    assert "| resnet56 | 6.57 ± 0.00 | 6.57, 6.57 |" in text
    expected = policy_for("common").calibration.references[("resnet56", "test_error")]
    cell = f"{expected.mean:.2f} ({len(expected.sources)} sources)"
    assert f"| 6.97 | -0.40 | {cell} |" in text  # paper, Δ, expected at `common`
    for section in ("Operating characteristics", "Tolerance model", "Reference runs"):
        assert f"## {section}" in text
    # judged at the run's K = 2: the operating characteristics are printed for K = 2 only
    assert "| P(pass), faithful, K=2 | P(fail), 1 pp worse, K=2 |" in text
    assert "K=1 |" not in text and "K=5 |" not in text
    assert "| tolerance | resnet56 test error within the band | 0.99 | 0." in text
    for name in ("completeness", "tolerance"):
        assert f"### {name}: PASS" in text
    for name in ("degradation", "residual"):  # no published training errors at `common`
        assert f"### {name}: PARTIAL" in text
    first = text.splitlines()[4]  # after the title and the run line: the claims, counted
    # 4 tolerance + 2 test-error orderings; at K = 2 ResNet-20 > 56 is shown only, like the
    # two training-error claims without `common` references and ResNet training depth gain
    assert first.startswith("**Claims: 6 asserted and holding · 0 asserted and failing · 4 ")
    assert "| total_iterations | 1000 | 64000 | 'terminate training at 64k iterations'" in text
    assert (tmp_path / "rep" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["preset"] == "common"


def test_mini_run_is_titled_as_not_comparable(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", preset="mini", official=False)
    cfg = run / "resnet20" / "seed0" / "config.json"
    counts = {"train": 5085, "val": 0, "test": 1017}
    for c in run.glob("*/seed0/config.json"):
        c.write_text(json.dumps({**json.loads(c.read_text()), "data_counts": counts}))
    assert cfg.is_file()
    text = write_report(run, tmp_path / "rep").read_text()
    first = text.splitlines()[0]
    assert first == (
        "# MINI-SCALE run (core) on a 5,085-image subset of CIFAR-10 — "
        "not comparable to the paper's numbers"
    )
    assert "**Not the paper's numbers.**" in text
    assert "| n/a |" in text and "### tolerance: SKIP" in text
    assert "data: a SUBSET of CIFAR-10" in text


def test_doctored_run_report_shows_the_failed_verdict(tmp_path: Path) -> None:
    finals = {"plain20": [FAITHFUL["plain56"]], "plain56": [FAITHFUL["plain20"]]}
    text = write_report(write_run(tmp_path / "run", finals=finals), tmp_path / "rep").read_text()
    assert "### degradation: FAIL" in text
    assert "| plain56 > plain20 | final_test_error | 8.84 | 12.77 | 0/1 | FAIL |" in text


def test_layer_response_files_are_included(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    doc = {
        "definition": "std after BN",
        "models": {
            "plain20": {"label": "plain-20", "mean_std": 0.5, "num_layers": 19, "num_seeds": 1},
            "resnet20": {"label": "ResNet-20", "mean_std": 0.25, "num_layers": 19, "num_seeds": 1},
        },
    }
    (run / "layer_response.json").write_text(json.dumps(doc))
    (run / "layer_response.png").write_bytes(b"\x89PNG fake")
    text = write_report(run, tmp_path / "rep").read_text()
    assert "## Layer responses (Fig. 7)" in text
    assert "| ResNet-20 | 0.2500 | 19 | 1 |" in text
    assert (tmp_path / "rep" / "layer_response.png").is_file()


@pytest.mark.parametrize(
    ("summary", "start"),
    [
        ({"preset": "smoke", "experiment": "core"}, "SMOKE run (core)"),
        ({"preset": "paper", "experiment": "core", "data_official": False}, "FORCED PAPER run"),
        (
            {"preset": "paper", "experiment": "fig6", "data_official": True, "complete": False},
            "INCOMPLETE paper run",
        ),
    ],
)
def test_title_never_presents_a_partial_or_small_run_as_the_paper(summary, start) -> None:
    assert title_of(summary).startswith(start)


def test_report_of_a_folder_that_is_not_a_run_is_one_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "summary.json is missing" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ReproError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_deviations_are_derived_from_the_config_field_by_field(tmp_path: Path) -> None:
    """Every field of baselines/he2016_recipe.json the run departs from is listed with the
    paper's words; the fields it shares with the paper are not."""
    run = write_run(tmp_path / "run")  # the `common` recipe
    config = run / "resnet56" / "seed0" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "normalize": "imagenet"}))
    text = write_report(run, tmp_path / "rep").read_text()
    section = text[text.index("## Deviations from the paper") : text.index("## Recipe")]
    assert "| milestone_unit | 'epoch' | 'iteration' |" in section
    assert "| normalize | 'imagenet', 'per-channel' | 'per-pixel-mean' |" in section
    assert "| momentum |" not in section and "| split |" not in section  # as in the paper
    assert "'The network inputs are 32x32 images, with the per-pixel mean subtracted.'" in section


def test_an_overfitting_run_is_not_reported_as_degradation_and_the_exit_status_says_so(
    tmp_path: Path,
) -> None:
    """Plain-56 trains better than plain-20, test errors unchanged: `paper` (training errors
    calibrated) FAILs degradation, `common` (none) shows it PARTIAL; neither exits 0."""
    overfit = {"plain56": [(1.0, 12.77)]}
    codes = {}
    for preset in ("paper", "common"):
        run = write_run(tmp_path / preset, preset=preset, finals=overfit)
        codes[preset] = main(["report", str(run), "--out", str(tmp_path / f"rep-{preset}")])
        text = (tmp_path / f"rep-{preset}" / "report.md").read_text()
        assert "### degradation: PASS" not in text
    assert codes == {"paper": 1, "common": 3}
    assert "### degradation: FAIL" in (tmp_path / "rep-paper" / "report.md").read_text()
    faithful = write_run(tmp_path / "ok", preset="paper")
    assert main(["report", str(faithful), "--out", str(tmp_path / "rep-ok")]) == 0
