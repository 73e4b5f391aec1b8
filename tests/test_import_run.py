"""`repro import-run`: another code base's logs become a run folder the claims read; a claim that
needs what the logs lack is "not assessable", never a pass; bad input is one line, nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from repro.claims import NOT_ASSESSABLE, PARTIAL, all_verdicts, check_tolerance
from repro.cli import main
from repro.foreign.log_formats import tensorboard_available
from repro.run_config import read_run_config
from repro.store import load_matrix, read_metrics

# final test / train error (%) per model: the paper's orderings hold
ERRORS = {
    "plain20": (9.0, 6.0),
    "plain56": (13.0, 10.0),
    "resnet20": (8.5, 5.0),
    "resnet56": (7.0, 2.0),
}
MAP = ["--map", "train_acc=acc", "--map", "train_loss=loss", "--map", "seconds=time"]


def epochs(test: float, train: float | None, n: int = 6) -> list[dict]:
    """A train_cifar.py-style per-epoch log: accuracies in percent, converging to the errors."""
    rows = []
    for e in range(1, n + 1):
        row = {
            "epoch": e,
            "lr": 0.1,
            "test_acc": 100 - test - 3 / e,
            "loss": 1 / e,
            "time": 9.0 * e,
        }
        if train is not None:
            row["acc"] = 100 - train - 3 / e
        rows.append(row)
    return rows


def write_matrix(root: Path, with_train: bool = True) -> Path:
    for model, (test, train) in ERRORS.items():
        for seed in (0, 1):
            folder = root / model / f"seed{seed}"
            folder.mkdir(parents=True)
            log = epochs(test, train if with_train else None)
            (folder / "metrics.json").write_text(json.dumps(log))
    return root


def import_matrix(src: Path, out: Path, *extra: str, mapping: list[str] = MAP) -> int:
    argv = ["import-run", str(src), "--out", str(out), "--experiment", "core"]
    return main([*argv, "--iterations-per-epoch", "391", "--finished", *mapping, *extra])


def verdicts(root: Path) -> dict[str, str]:
    return {v.name: v.status for v in all_verdicts(load_matrix(root))}


def test_an_imported_metrics_json_matrix_reports_and_its_claims_evaluate(tmp_path, capsys):
    src, out = write_matrix(tmp_path / "logs"), tmp_path / "imported"
    assert import_matrix(src, out) == 0
    # exit 3: nothing failed, but at `common` (no published training errors) degradation and
    # the residual cure are PARTIAL: their defining training-error claims are not asserted
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 3
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Imported runs" in text and "| resnet56/seed0 |" in text  # said where it is shown
    assert "have not finished" not in capsys.readouterr().err  # --finished imports are finished
    status = verdicts(out)
    assert status["degradation"] == PARTIAL and status["residual"] == PARTIAL
    config = read_run_config(out / "resnet56" / "seed0").to_dict()
    assert config["imported"]["format"] == "json" and config["imported"]["finished"] is True
    assert "checkpoint" in config["imported"]["lacks"]
    assert not (out / "resnet56" / "seed0" / "final.pt").exists()  # never faked
    last = read_metrics(out / "resnet56" / "seed0")[-1]
    assert last["iteration"] == 6 * 391 and last["test_error"] == pytest.approx(7.5)


def test_completeness_of_an_import_that_does_not_say_its_recipe_is_not_assessable(tmp_path):
    out = tmp_path / "imported"
    import_matrix(write_matrix(tmp_path / "logs"), out)
    assert verdicts(out)["completeness"] == NOT_ASSESSABLE


def test_an_import_without_training_error_makes_the_train_claims_not_assessable(tmp_path):
    out = tmp_path / "imported"
    assert (
        import_matrix(write_matrix(tmp_path / "logs", with_train=False), out, mapping=MAP[2:]) == 0
    )
    matrix = load_matrix(out)
    for verdict in all_verdicts(matrix):
        if verdict.name in ("degradation", "residual"):
            assert verdict.status == NOT_ASSESSABLE, verdict
            train_rows = [r for r in verdict.rows if "train" in r[1]]
            assert train_rows and all(str(r[-1]).startswith(NOT_ASSESSABLE) for r in train_rows)
    assert (
        "train_error" in read_run_config(out / "plain20" / "seed0").to_dict()["imported"]["lacks"]
    )


def test_fig7_of_an_import_without_checkpoints_is_not_assessable(tmp_path):
    out = tmp_path / "imported"
    import_matrix(write_matrix(tmp_path / "logs"), out)
    assert verdicts(out)["layer_response"] == NOT_ASSESSABLE


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_csv_with_a_column_mapping_and_accuracy_fractions_becomes_percent_errors(
    tmp_path, capsys
):
    rows = [{"step": 391 * e, "val_err_frac": 0.2 / e, "acc": 0.7 + 0.05 * e} for e in (1, 2)]
    src = write_csv(tmp_path / "log.csv", rows)
    argv = ["import-run", str(src), "--out", str(tmp_path / "run"), "--model", "resnet20"]
    assert main([*argv, "--map", "test_error=val_err_frac", "--map", "train_acc=acc"]) == 0
    assert "fraction (detected" in capsys.readouterr().out
    records = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in records] == [391, 782]
    assert records[0]["test_error"] == pytest.approx(20.0)
    assert records[1]["train_error"] == pytest.approx(20.0)  # 100 - 100 * 0.8
    assert read_run_config(tmp_path / "run").to_dict()["imported"]["format"] == "csv"


def test_the_scale_can_be_stated_instead_of_detected(tmp_path):
    src = write_csv(tmp_path / "log.csv", [{"epoch": 1, "test_error": 0.9}])
    argv = ["import-run", str(src), "--out", str(tmp_path / "run"), "--model", "resnet20"]
    assert main([*argv, "--scale", "percent", "--iterations-per-epoch", "391"]) == 0
    assert read_metrics(tmp_path / "run")[0]["test_error"] == pytest.approx(0.9)


def bad_import(tmp_path: Path, capsys, rows: list[dict] | str, *extra: str) -> str:
    src = tmp_path / "metrics.json"
    src.write_text(rows if isinstance(rows, str) else json.dumps(rows))
    out = tmp_path / "run"
    argv = ["import-run", str(src), "--out", str(out), "--model", "resnet20", *extra]
    assert main(argv) == 2
    assert not out.exists() or not any(out.iterdir())  # nothing written
    assert not list(tmp_path.glob(".run.import-*"))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("repro import-run: error:")
    return err


def test_a_non_numeric_value_names_its_column_and_row(tmp_path, capsys):
    rows = [{"step": 1, "test_error": 9.0}, {"step": 2, "test_error": "n/a"}]
    err = bad_import(tmp_path, capsys, rows)
    assert "'test_error'" in err and "row 2" in err


def test_a_column_missing_in_one_row_names_it(tmp_path, capsys):
    err = bad_import(tmp_path, capsys, [{"step": 1, "test_error": 9.0}, {"step": 2}])
    assert "'test_error' is missing in row 2" in err


def test_a_mapped_column_the_log_lacks_is_refused(tmp_path, capsys):
    err = bad_import(tmp_path, capsys, [{"step": 1, "acc": 0.9}], "--map", "test_acc=val_acc")
    assert "no column 'val_acc'" in err


def test_a_log_without_iterations_needs_iterations_per_epoch(tmp_path, capsys):
    err = bad_import(tmp_path, capsys, [{"epoch": 1, "test_error": 9.0}])
    assert "--iterations-per-epoch" in err


def test_an_unknown_format_is_refused(tmp_path, capsys):
    src = tmp_path / "log.txt"
    src.write_text("epoch 1 acc 90\n")
    out = tmp_path / "run"
    assert main(["import-run", str(src), "--out", str(out), "--model", "resnet20"]) == 2
    assert "unknown format" in capsys.readouterr().err and not out.exists()


def test_an_import_into_a_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    src = tmp_path / "metrics.json"
    src.write_text(json.dumps([{"step": 1, "test_error": 9.0}]))
    argv = ["import-run", str(src), "--out", str(tmp_path / "run"), "--model", "resnet20"]
    assert main(argv) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")  # --out under a file: no folder can be made there
    src = tmp_path / "metrics.json"
    src.write_text(json.dumps([{"step": 1, "test_error": 9.0}]))
    out = tmp_path / "afile" / "run"
    assert main(["import-run", str(src), "--out", str(out), "--model", "resnet20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "afile" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_bad_run_in_a_matrix_writes_nothing(tmp_path, capsys):
    src = write_matrix(tmp_path / "logs")
    (src / "resnet56" / "seed1" / "metrics.json").write_text(
        json.dumps([{**epochs(7, 2)[0], "epoch": "x"}])
    )
    assert import_matrix(src, tmp_path / "imported") == 2
    assert not (tmp_path / "imported").exists()
    assert "'epoch', row 1" in capsys.readouterr().err


@pytest.mark.skipif(tensorboard_available(), reason="tensorboard is installed")
def test_tensorboard_event_files_without_tensorboard_say_how_to_install_it(tmp_path, capsys):
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    out = tmp_path / "run"
    assert main(["import-run", str(tmp_path / "tb"), "--out", str(out), "--model", "resnet20"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs tensorboard" in err and "pip install" in err and not out.exists()


def test_tolerance_of_an_import_that_does_not_state_its_data_is_not_assessable(tmp_path):
    out = tmp_path / "imported"
    import_matrix(write_matrix(tmp_path / "logs"), out)
    verdict = check_tolerance(load_matrix(out))  # preset common: tolerance is asserted
    assert verdict.status == NOT_ASSESSABLE  # never a pass on unstated data
    assert "official data and a known recipe" in verdict.reason


def test_tensorboard_event_files_import_as_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (an optional extra)")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "logs"))
    for step in (391, 782):
        writer.add_scalar("train_error", 50_000 / step, step)
        writer.add_scalar("test_error", 60_000 / step, step)
    writer.close()
    out = tmp_path / "run"
    assert (
        main(
            [
                "import-run",
                str(tmp_path / "logs"),
                "--out",
                str(out),
                "--model",
                "resnet20",
                "--finished",
            ]
        )
        == 0
    )
    rows = read_metrics(out)
    assert [r["iteration"] for r in rows] == [391, 782]
    assert rows[-1]["test_error"] == pytest.approx(60_000 / 782)
    assert read_run_config(out).to_dict()["imported"]["format"] == "tensorboard"
