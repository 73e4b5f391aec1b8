"""`repro import-run`: Caffe training logs as a format, and every bad log or flag refused in one
line naming the file, column and row, with nothing written (issue 23 item 7; issue 21 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.cli import main
from repro.run_config import read_run_config
from repro.store import read_metrics

CAFFE = """\
I0115 10:00:00.000000  1234 solver.cpp:404] Iteration 0, Testing net (#0)
I0115 10:00:01.000000  1234 solver.cpp:471]     Test net output #0: accuracy = 0.0999
I0115 10:00:01.000000  1234 solver.cpp:471]     Test net output #1: loss = 2.30259 (* 1 = 2.30259 loss)
I0115 10:00:02.000000  1234 solver.cpp:228] Iteration 0, loss = 2.31
I0115 10:00:02.000000  1234 solver.cpp:244]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I0115 10:00:02.000000  1234 solver.cpp:646] Iteration 0, lr = 0.1
I0115 10:00:09.000000  1234 solver.cpp:228] Iteration 100, loss = 1.52
I0115 10:00:09.000000  1234 solver.cpp:244]     Train net output #0: loss = 1.52 (* 1 = 1.52 loss)
I0115 10:00:09.000000  1234 solver.cpp:646] Iteration 100, lr = 0.1
I0115 10:01:00.000000  1234 solver.cpp:404] Iteration 32000, Testing net (#0)
I0115 10:01:01.000000  1234 solver.cpp:471]     Test net output #0: accuracy = 0.8801
I0115 10:01:01.000000  1234 solver.cpp:471]     Test net output #1: loss = 0.41 (* 1 = 0.41 loss)
I0115 10:01:02.000000  1234 solver.cpp:228] Iteration 32000, loss = 0.2
I0115 10:01:02.000000  1234 solver.cpp:646] Iteration 32000, lr = 0.01
I0115 10:02:00.000000  1234 solver.cpp:404] Iteration 64000, Testing net (#0)
I0115 10:02:01.000000  1234 solver.cpp:471]     Test net output #0: accuracy = 0.9303
I0115 10:02:01.000000  1234 solver.cpp:471]     Test net output #1: loss = 0.29 (* 1 = 0.29 loss)
"""


def run_import(tmp_path: Path, src: Path, *extra: str, model: str = "resnet56") -> int:
    return main(["import-run", str(src), "--out", str(tmp_path / "run"), "--model", model, *extra])


def test_a_caffe_log_imports_without_conversion_and_drops_the_test_at_iteration_0(tmp_path, capsys):
    src = tmp_path / "resnet56.log"
    src.write_text(CAFFE)
    argv = ["--set", "iterations=64000", "--total-iterations", "64000", "--finished"]
    assert run_import(tmp_path, src, *argv) == 0
    out = capsys.readouterr().out
    assert "(caffe)" in out and "fraction (a Caffe log" in out
    records = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in records] == [32000, 64000]  # not the untrained net at 0
    assert records[0]["test_error"] == pytest.approx(11.99)
    assert records[-1]["test_error"] == pytest.approx(6.97)
    assert records[0]["train_loss"] == pytest.approx(1.52) and records[0]["lr"] == 0.1
    assert records[-1]["lr"] == 0.01 and records[-1]["test_loss"] == pytest.approx(0.29)
    imported = read_run_config(tmp_path / "run").to_dict()["imported"]
    assert imported["format"] == "caffe" and "iteration 0" in imported["dropped"]
    # an iteration schedule needs no epochs
    assert "epochs" not in imported["unknown"] and "iterations" not in imported["unknown"]


def test_a_caffe_log_without_tests_is_one_line(tmp_path, capsys):
    src = tmp_path / "train.log"
    src.write_text(CAFFE.replace("Testing net", "Snapshotting"))
    err = refused(tmp_path, capsys, src)
    assert str(src) in err and "no 'Iteration N, Testing net' lines" in err


def refused(tmp_path: Path, capsys, src: Path, *extra: str, model: str = "resnet20") -> str:
    assert run_import(tmp_path, src, *extra, model=model) == 2
    out = tmp_path / "run"
    assert not out.exists() or not any(out.iterdir())  # nothing written
    assert not list(tmp_path.glob(".run.import-*"))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        ("iteration,test_error\n391,9\nnan,8\n", [], "column 'iteration', row 2: 'nan'"),
        ("iteration,test_error\n391,9\ninf,8\n", [], "column 'iteration', row 2: 'inf'"),
        ("epoch,test_error\nnan,9\n", ["--iterations-per-epoch", "391"], "column 'epoch', row 1"),
        ("iteration,test_error\n391,-3\n", [], "-3 is negative"),
        ("iteration,test_acc\n391,140\n", [], "140 % is outside 0-100 %"),
        ("iteration,test_error\n391,9\n782,nan\n", [], "column 'test_error', row 2: 'nan'"),
        ("iteration,test_error\n391.5,9\n", [], "not a whole number >= 0"),
        ("iteration,test_error\n-391,9\n", [], "not a whole number >= 0"),
    ],
)
def test_bad_values_name_the_file_column_and_row(tmp_path, capsys, text, extra, expected):
    src = write(tmp_path, "log.csv", text)
    err = refused(tmp_path, capsys, src, *extra)
    assert str(src) in err and expected in err


def test_a_deeply_nested_json_log_is_one_line(tmp_path, capsys):
    src = write(tmp_path, "metrics.json", "[" * 10_000 + "]" * 10_000)
    assert "nests JSON too deeply" in refused(tmp_path, capsys, src)


@pytest.mark.parametrize(
    ("extra", "model", "expected"),
    [
        ([], "nosuchnet", "--model 'nosuchnet' is not one of the paper's nets"),
        ([], "resnet2O", "resnet20"),
        (["--seed", "-1"], "resnet20", "--seed must be >= 0"),
        (["--set", "epochs=-5", "--finished"], "resnet20", "epochs must be a whole number >= 1"),
        (["--set", "lr=nan"], "resnet20", "lr must be a finite number >= 0"),
        (["--set", "data_official=maybe"], "resnet20", "data_official must be true or false"),
        (["--iterations-per-epoch", "0"], "resnet20", "--iterations-per-epoch must be >= 1"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, extra, model, expected):
    src = write(tmp_path, "log.csv", "iteration,test_error\n391,9\n")
    assert expected in refused(tmp_path, capsys, src, *extra, model=model)


def test_missing_columns_name_the_file_the_columns_found_and_the_map_to_use(tmp_path, capsys):
    src = write(tmp_path, "log.csv", "iter,test_error\n391,9\n")
    err = refused(tmp_path, capsys, src)
    assert str(src) in err and "iter, test_error" in err and "--map iteration=iter" in err
    src = write(tmp_path, "log.csv", "step,top1_val_acc,loss\n391,90,1\n")
    err = refused(tmp_path, capsys, src)
    assert "no test error or accuracy column among loss, step, top1_val_acc" in err
    assert "--map test_acc=top1_val_acc" in err
    src = write(tmp_path, "log.csv", "iteration,top1,val_loss,train_err\n100,50,1.0,40\n")
    err = refused(tmp_path, capsys, src)  # a loss or a training column is never suggested
    assert err.rstrip().endswith("pass --map test_acc=top1 (an accuracy: error = 100 - acc)")


def test_a_percent_log_whose_train_error_falls_below_1_stays_percent(tmp_path, capsys):
    rows = [
        {"step": 391 * e, "train_error": t, "test_error": 7 + t} for e, t in ((1, 55.0), (2, 0.5))
    ]
    src = write(tmp_path, "metrics.json", json.dumps(rows))
    assert run_import(tmp_path, src) == 0
    records = read_metrics(tmp_path / "run")
    assert [r["train_error"] for r in records] == [55.0, 0.5]  # not 5,500 % and 50 %
    rows = [{"step": 391, "train_error": 0.5, "test_error": 0.7}]  # all <= 1: say it is a guess
    src = write(tmp_path / "..", "metrics2.json", json.dumps(rows))
    assert (
        main(["import-run", str(src), "--out", str(tmp_path / "run2"), "--model", "resnet20"]) == 0
    )
    assert "fraction (detected" in capsys.readouterr().out
