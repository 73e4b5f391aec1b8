"""One writer per run, nothing finished undone, every resume and every refusal said in one line
(issue: "No file can run code, no two writers share a run, nothing finished is undone")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import reproduce_args
from synthetic_runs import write_run
from trainer_helpers import ROOT, metrics_without_timing, run_cli, tiny_args

from repro.claims import FAIL, INCONCLUSIVE, check_completeness, check_degradation
from repro.cli import main
from repro.errors import ReproError
from repro.store import RunLock, load_matrix
from repro.train.checkpoint import load_checkpoint


def train(data: Path, out: Path, *extra: str, quiet: bool = True) -> int:
    args = tiny_args(data, out, *extra)
    return run_cli(args if quiet else [a for a in args if a != "--quiet"])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- one writer per run folder -------------------------------------------------------------


def test_a_second_trainer_on_a_locked_folder_is_refused_naming_the_holder(
    synthetic_cifar, tmp_path, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert train(synthetic_cifar, out, "--max-steps", "2") == 2
        line = one_error_line(capsys)
        assert f"in use by another trainer (pid {os.getpid()})" in line
        assert not (out / "config.json").exists()  # refused before anything was written
    assert train(synthetic_cifar, out, "--max-steps", "2") == 0  # released with its holder


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from repro.store import RunLock; "
        "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(ReproError, match=f"pid {child.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    RunLock(tmp_path).acquire().release()  # the OS released it with the process


def test_a_second_matrix_driver_on_the_same_folder_is_refused(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "matrix"
    out.mkdir()
    argv = reproduce_args(synthetic_cifar, out, "--device", "cpu")
    with RunLock(out, "repro reproduce"):
        assert main(argv) == 2
    assert "in use by another repro reproduce" in one_error_line(capsys)


# --- nothing finished is undone; every resume says where it resumes from --------------------


def test_resuming_a_finished_max_steps_run_leaves_it_finished(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    before = (out / "final.pt").stat().st_mtime_ns, metrics_without_timing(out)
    assert run_cli(["train", "--out", str(out), "--resume"]) == 0  # the README's resume form
    assert "run already complete" in capsys.readouterr().out
    assert ((out / "final.pt").stat().st_mtime_ns, metrics_without_timing(out)) == before
    assert load_checkpoint(out / "final.pt")["iteration"] == 6


def test_extending_a_finished_run_takes_an_explicit_max_steps_and_says_so(
    synthetic_cifar, tmp_path, capsys
):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    assert run_cli(["train", "--out", str(out), "--resume", "--max-steps", "12"]) == 0
    said = capsys.readouterr().out
    assert "extending the finished run from iteration 6 to 12" in said
    assert "resuming from last.pt at iteration 6" in said
    assert load_checkpoint(out / "final.pt")["iteration"] == 12


def test_a_run_without_a_checkpoint_says_it_starts_from_iteration_0(
    synthetic_cifar, tmp_path, capsys
):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    for name in ("last.pt", "final.pt", "best.pt"):
        (out / name).unlink()
    assert train(synthetic_cifar, out, "--max-steps", "6", quiet=False) == 0
    assert "no last.pt yet (the run stopped before its first checkpoint)" in capsys.readouterr().out


def test_a_lost_config_is_recovered_from_the_checkpoint(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    (out / "config.json").unlink()
    (out / "final.pt").unlink()
    assert run_cli(["train", "--out", str(out), "--resume", "--max-steps", "12"]) == 0
    assert "config.json was missing: recovered the run's config from last.pt" in (
        capsys.readouterr().out
    )
    assert (out / "config.json").is_file()
    assert [r["iteration"] for r in metrics_without_timing(out)] == [6, 12]


def test_a_lost_metrics_history_is_refused_in_one_line(synthetic_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    (out / "final.pt").unlink()
    (out / "metrics.jsonl").unlink()
    assert run_cli(["train", "--out", str(out), "--resume", "--max-steps", "12"]) == 2
    assert "metrics.jsonl is missing while last.pt is at iteration 6" in one_error_line(capsys)


def test_temp_files_of_a_killed_write_are_removed_at_the_next_start(
    synthetic_cifar, tmp_path, capsys
):
    out = tmp_path / "run"
    assert train(synthetic_cifar, out, "--max-steps", "6") == 0
    stale = out / ".last.pt.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert run_cli(["train", "--out", str(out), "--resume", "--max-steps", "12"]) == 0
    assert not stale.exists()
    assert "removed .last.pt.x1y2z3.tmp" in capsys.readouterr().out


# --- one clear line ---------------------------------------------------------------------------


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_file(
    synthetic_cifar, tmp_path
):
    out = tmp_path / "run"
    cmd = " ".join(
        [
            "ulimit -f 200;",
            sys.executable,
            "-m",
            "repro",
            *tiny_args(synthetic_cifar, out, "--max-steps", "6"),
        ]
    )
    res = subprocess.run(
        ["bash", "-c", cmd],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "File too large" in lines[0]
    assert not list(out.glob(".*.tmp")) and not (out / "final.pt").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--lr", "0"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--momentum", "-1"], "--momentum"),
        (["--gamma", "0"], "--gamma"),
        (["--weight-decay", "nan"], "--weight-decay"),
        (["--batch-size", "200"], "--batch-size 200 is larger than the 90 training images"),
    ],
)
def test_a_bad_recipe_value_is_refused_naming_its_flag(
    synthetic_cifar, tmp_path, capsys, flags, named
):
    assert train(synthetic_cifar, tmp_path / "run", "--max-steps", "2", *flags) == 2
    assert named in one_error_line(capsys)


def test_an_imagenet_head_is_refused_on_cifar10(synthetic_cifar, tmp_path, capsys):
    args = [
        "train",
        "--model",
        "resnet18",
        "--out",
        str(tmp_path / "r18"),
        "--device",
        "cpu",
        "--data-root",
        str(synthetic_cifar),
        "--batch-size",
        "16",
        "--max-steps",
        "1",
    ]
    assert run_cli(args) == 2
    assert "1000-class head but CIFAR-10 has 10 classes" in one_error_line(capsys)


def test_debug_before_the_command_shows_the_traceback(tmp_path):
    with pytest.raises(ReproError):
        main(["--debug", "evaluate", str(tmp_path / "missing.pt")])


# --- an unfinished matrix -------------------------------------------------------------------


def test_verdicts_on_an_unfinished_matrix_are_inconclusive_and_the_report_says_so(tmp_path, capsys):
    root = write_run(tmp_path / "run")
    (root / "plain56" / "seed0" / "final.pt").unlink()
    matrix = load_matrix(root)
    assert check_completeness(matrix).status == FAIL
    degradation = check_degradation(matrix)
    assert degradation.status == INCONCLUSIVE
    assert "inconclusive (run not finished: plain56/seed0)" in degradation.reason
    # the report is written, marked INCOMPLETE; its exit status is 1: completeness fails
    # (issue 22: the status follows the verdicts; issue 21: never 0 on an unfinished matrix)
    assert main(["report", str(root), "--out", str(tmp_path / "report")]) == 1
    captured = capsys.readouterr()
    assert "INCOMPLETE: 1 run(s) have not finished (plain56/seed0)" in captured.err
    text = (tmp_path / "report" / "report.md").read_text()
    assert "### degradation: INCONCLUSIVE" in text
    assert "> **INCOMPLETE.**" in text


def test_the_config_records_the_shortcut_option_explicitly(synthetic_cifar, tmp_path):
    import json

    assert train(synthetic_cifar, tmp_path / "a", "--max-steps", "1") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["shortcut"] == "A"
    args = ["--max-steps", "1", "--shortcut", "B"]
    assert train(synthetic_cifar, tmp_path / "b", *args) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["shortcut"] == "B"
