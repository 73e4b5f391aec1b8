"""Outputs that must not mislead (issue 21, item 4): a report of an unfinished matrix, a full disk
while reporting, a summary.json that leads outside the matrix or names impossible seeds, and
read-only output folders."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from cli_helpers import one_clear_line, reproduce_args, run_repro
from synthetic_runs import write_run


def test_a_report_of_an_unfinished_matrix_says_incomplete_and_exits_1(tmp_path, capsys):
    root = write_run(tmp_path / "run")
    (root / "resnet56" / "seed0" / "final.pt").unlink()
    rc, out, err = run_repro(capsys, "report", str(root), "--out", str(tmp_path / "rep"))
    assert rc == 1  # completeness fails (repro.claims.exit_status)
    assert "INCOMPLETE: 1 run(s) have not finished (resnet56/seed0)" in err
    assert (tmp_path / "rep" / "report.md").read_text().count("**INCOMPLETE.**") == 1


def test_a_report_of_a_finished_matrix_says_nothing_of_incompleteness(tmp_path, capsys):
    root = write_run(tmp_path / "run")
    rc, _, err = run_repro(capsys, "report", str(root), "--out", str(tmp_path / "rep"))
    # 3, not 0: `common` has no training-error reference, so degradation and residual are PARTIAL
    assert rc == 3 and "INCOMPLETE" not in err
    assert "INCOMPLETE" not in (tmp_path / "rep" / "report.md").read_text()


def test_a_full_disk_while_plotting_leaves_no_curves_png(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    root = write_run(tmp_path / "run")
    rep = tmp_path / "rep"

    def full_disk(self, fname, **kw):
        Path(fname).write_bytes(b"")  # the file is opened, then nothing more fits
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    line = one_clear_line(*run_repro(capsys, "report", str(root), "--out", str(rep)))
    assert "curves.png" in line and "No space left on device" in line
    assert not (rep / "curves.png").exists() and not list(rep.glob(".*.tmp"))
    assert not (rep / "report.md").exists()


def _edit_summary(root: Path, **changes) -> None:
    summary = json.loads((root / "summary.json").read_text())
    summary.update(changes)
    (root / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize("model", ["../../../etc", "..", "a/b", "/etc"])
def test_model_names_that_lead_outside_the_matrix_are_refused(tmp_path, capsys, model):
    root = write_run(tmp_path / "run")
    _edit_summary(root, models={model: {}})
    line = one_clear_line(*run_repro(capsys, "report", str(root), "--out", str(tmp_path / "r")))
    assert "not a model folder name" in line


@pytest.mark.parametrize("seed", [10**300, -1, 2**63])
def test_impossible_seeds_in_summary_json_are_one_line(tmp_path, capsys, seed):
    root = write_run(tmp_path / "run")
    _edit_summary(root, seeds=[seed])
    line = one_clear_line(*run_repro(capsys, "report", str(root), "--out", str(tmp_path / "r")))
    assert "not a seed from 0 to 2**63-1" in line


# --- an --out that cannot be written is one line, before any work -----------------------------

UNWRITABLE = "/proc/no-such-folder/out"  # even root cannot create it


def test_reproduce_into_an_unwritable_out_is_one_line(synthetic_cifar, capsys):
    argv = reproduce_args(synthetic_cifar, Path(UNWRITABLE), "--device", "cpu")
    assert "cannot write to --out" in one_clear_line(*run_repro(capsys, *argv))


def test_analyze_into_an_unwritable_out_is_one_line(tmp_path, capsys):
    argv = ["analyze", "layer-response", str(tmp_path), "--out", UNWRITABLE]
    assert "cannot write to --out" in one_clear_line(*run_repro(capsys, *argv))


def test_data_download_into_an_unwritable_root_is_one_line(capsys):
    line = one_clear_line(*run_repro(capsys, "data", "download", "--root", UNWRITABLE))
    assert f"cannot write to --root {UNWRITABLE}" in line


def test_report_into_an_unwritable_out_is_one_line(tmp_path, capsys):
    root = write_run(tmp_path / "run")
    line = one_clear_line(*run_repro(capsys, "report", str(root), "--out", UNWRITABLE))
    assert "cannot write the report to" in line
