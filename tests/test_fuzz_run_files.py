"""Every reader of a run's JSON files (summary.json, config.json, metrics.jsonl,
layer_response.json, the baselines) takes damaged input without a traceback: the outcome is a
correct load, a problem the claims report, or one ReproError line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fuzz_helpers import damaged, json_damaged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_runs import write_layer_response, write_run

import repro.baselines as baselines_mod
from repro.baselines import load_baseline
from repro.claims import (
    FAIL,
    NOT_ASSESSED,
    PARTIAL,
    PASS,
    all_verdicts,
    operating_characteristics,
)
from repro.errors import ReproError
from repro.matrix_summary import refreshed_summary
from repro.store import load_matrix, read_metrics

RUN_FILES = (
    "summary.json",
    "plain56/seed0/config.json",
    "plain56/seed0/metrics.jsonl",
    "layer_response.json",
)
BASELINES = baselines_mod.BASELINES_DIR  # the real ones (the tests below patch the module's)
FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def faithful(tmp_path_factory) -> Path:
    """A finished synthetic core matrix that passes every claim (tests/synthetic_runs.py)."""
    return write_layer_response(write_run(tmp_path_factory.mktemp("faithful") / "run"))


def read_and_judge(root: Path) -> list[str]:
    """What `repro report` and the acceptance suite do with a matrix: load, summarise, judge."""
    matrix = load_matrix(root)
    refreshed_summary(matrix)
    return [v.status for v in all_verdicts(matrix)]


def damage_and_judge(faithful: Path, tmp: Path, name: str, data: st.DataObject) -> None:
    root = tmp / "run"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(faithful, root)
    original = (root / name).read_bytes()
    damage = data.draw(st.sampled_from((damaged, json_damaged)))
    (root / name).write_bytes(data.draw(damage(original)))
    try:
        statuses = read_and_judge(root)
    except ReproError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return
    assert set(statuses) <= {PASS, FAIL, "skip", "inconclusive", NOT_ASSESSED, PARTIAL}


@pytest.mark.parametrize("name", RUN_FILES)
@FUZZ
@given(data=st.data())
def test_a_damaged_run_file_is_judged_or_refused_in_one_line(faithful, tmp_path, name, data):
    damage_and_judge(faithful, tmp_path, name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_FILES)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_run_file_is_judged_or_refused_in_one_line_long(faithful, tmp_path, name, data):
    damage_and_judge(faithful, tmp_path, name, data)


def test_a_torn_last_metrics_line_is_skipped_and_a_torn_middle_line_is_a_problem(
    faithful, tmp_path
):
    shutil.copytree(faithful, tmp_path / "run")
    path = tmp_path / "run" / "plain56" / "seed0" / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:10])  # killed mid-append
    assert len(read_metrics(path)) == len(lines) - 1
    path.write_text(lines[0][:10] + "\n" + "".join(lines[1:]))  # damaged in the middle
    matrix = load_matrix(tmp_path / "run")
    assert "metrics.jsonl line 1 is not JSON" in " ".join(matrix.runs["plain56"][0].problems)
    assert all_verdicts(matrix)[0].status == FAIL  # completeness reports it


@pytest.mark.parametrize(
    "name",
    (
        "tolerances",
        "he2016_fig6_claims",
        "he2016_fig7_claims",
        "he2016_table6",
        "reference_runs",
        "mini_calibration",
    ),
)
@FUZZ
@given(data=st.data())
def test_a_damaged_baseline_is_used_or_refused_in_one_line(
    faithful, tmp_path, monkeypatch, name, data
):
    folder = tmp_path / "baselines"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BASELINES, folder)
    original = (folder / f"{name}.json").read_bytes()
    damage = data.draw(st.sampled_from((damaged, json_damaged)))
    (folder / f"{name}.json").write_bytes(data.draw(damage(original)))
    monkeypatch.setattr(baselines_mod, "BASELINES_DIR", folder)
    try:
        load_baseline(name)
        statuses = read_and_judge(faithful)
        for preset in ("common", "mini"):  # what `repro calibration` and the report compute
            operating_characteristics(preset, "core")
    except ReproError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return
    assert set(statuses) <= {PASS, FAIL, "skip", "inconclusive", NOT_ASSESSED, PARTIAL}
    json.loads((folder / f"{name}.json").read_text())  # it only got here as valid JSON
