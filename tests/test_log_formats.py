"""A new log format is one entry in LOG_FORMATS (issue 25): a toy format registered here is found
by its suffix, read by its own reader, scaled as it says, and imported like the built-in ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import ReproError
from repro.foreign.log_formats import LOG_FORMATS, LogFormat, find_log, read_text, register_format
from repro.run_config import read_run_config
from repro.store import read_metrics


def toy_rows(path: Path) -> list[dict[str, str]]:
    """``iter=100 acc=0.5`` per line: a format none of the built-in readers knows."""
    rows = []
    for line in read_text(path).splitlines():
        if line.strip():
            rows.append(dict(cell.split("=", 1) for cell in line.split()))
    return rows


TOY = LogFormat(
    "toy",
    toy_rows,
    suffixes=("toy",),
    glob="*.toy",
    described="one .toy",
    auto_scale="fraction",
    scale_note="a toy log prints accuracies as 0-1",
)


@pytest.fixture
def toy_format() -> Iterator[LogFormat]:
    before = dict(LOG_FORMATS)
    register_format(TOY)  # the whole diff of adding a log format
    yield TOY
    LOG_FORMATS.clear()
    LOG_FORMATS.update(before)


def write_toy(path: Path) -> Path:
    path.write_text("iter=100 acc=0.50\niter=200 acc=0.75\niter=300 acc=0.80\n")
    return path


def test_the_built_in_formats_are_entries_of_one_table() -> None:
    assert list(LOG_FORMATS) == ["json", "csv", "tensorboard", "caffe"]


def test_a_toy_format_is_found_by_suffix_and_in_a_folder(tmp_path, toy_format) -> None:
    log = write_toy(tmp_path / "train.toy")
    assert find_log(log, None) == (log, toy_format)
    assert find_log(tmp_path, None) == (log, toy_format)
    write_toy(tmp_path / "again.toy")
    with pytest.raises(ReproError, match=r"or one \.toy, found 2"):
        find_log(tmp_path, None)


def test_a_toy_log_imports_through_the_cli(tmp_path, toy_format, capsys) -> None:
    log, out = write_toy(tmp_path / "train.toy"), tmp_path / "run"
    code = main(["import-run", str(log), "--out", str(out), "--model", "resnet20",
                 "--map", "iteration=iter", "--map", "test_acc=acc"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    imported = read_run_config(out).imported
    assert imported is not None
    assert imported["format"] == "toy"
    assert imported["scale"] == "fraction (a toy log prints accuracies as 0-1)"
    rows = read_metrics(out)
    assert [r["iteration"] for r in rows] == [100, 200, 300]
    assert [r["test_error"] for r in rows] == pytest.approx([50.0, 25.0, 20.0])


def test_without_the_entry_the_toy_log_is_an_unknown_format(tmp_path, capsys) -> None:
    log = write_toy(tmp_path / "train.toy")
    assert main(["import-run", str(log), "--out", str(tmp_path / "run"), "--model", "resnet20"])
    assert "unknown format '.toy'" in capsys.readouterr().err
