"""Run files that must never lose data (issue 21, item 4): a .lock that is a link or a folder, a
last.pt that is gone or not a file, a full disk at the metrics append, special files given as
paths, and the mode of the files a run writes."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.fileio import append_jsonl, path_problem, read_json, write_json
from repro.run_config import parse_run_config
from repro.store import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    RunLock,
    read_metrics,
)
from repro.train.resume import inspect_run_dir

# --- the lock never follows a link -------------------------------------------------------------


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_is_untouched(tmp_path):
    victim = tmp_path / "v.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(ReproError, match=r"\.lock is a symbolic link: it cannot be the run's lock"):
        RunLock(run).acquire()
    assert victim.read_text() == "precious\n"


def test_a_lock_that_is_a_dangling_symlink_creates_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(ReproError, match="is a symbolic link"):
        RunLock(run).acquire()
    assert not (tmp_path / "created-through-the-link").exists()


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_that_is_a_folder_or_fifo_is_one_line(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").mkdir() if kind == "folder" else os.mkfifo(run / ".lock")
    with pytest.raises(ReproError, match="it cannot be the run's lock") as info:
        RunLock(run).acquire()
    assert ("is a folder" if kind == "folder" else "is a FIFO") in str(info.value)


def test_the_lock_still_works_on_a_plain_file(tmp_path):
    with RunLock(tmp_path) as lock:
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        assert lock is not None


# --- a lost last.pt never restarts a run from 0 ----------------------------------------------

CONFIG_DOC = {"model": "resnet_cifar", "model_kwargs": {"depth": 8}, "seed": 0,
              "eval_every": 6, "checkpoint_every": 6}  # fmt: skip


def _run_past_its_first_checkpoint(run: Path) -> None:
    run.mkdir()
    write_json(run / CONFIG, CONFIG_DOC)
    for it in (6, 12, 18):
        append_jsonl(run / METRICS, {"iteration": it, "test_error": 50.0})
    (run / BEST).write_bytes(b"best")


@pytest.mark.parametrize("how", ["deleted", "dangling link", "loop", "folder", "fifo"])
def test_resume_without_a_readable_last_pt_refuses_and_keeps_the_history(tmp_path, how):
    run = tmp_path / "run"
    _run_past_its_first_checkpoint(run)
    last = run / LAST
    if how == "dangling link":
        last.symlink_to(run / "gone.pt")
    elif how == "loop":
        last.symlink_to(last)
    elif how == "folder":
        last.mkdir()
    elif how == "fifo":
        os.mkfifo(last)
    with pytest.raises(ReproError, match=r"last\.pt .*restore it, or start over") as info:
        inspect_run_dir(run, parse_run_config(CONFIG_DOC), target=36, resume=True)
    assert "\n" not in str(info.value)
    assert len(read_metrics(run)) == 3 and (run / BEST).read_bytes() == b"best"


def test_a_run_killed_before_its_first_checkpoint_still_starts_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / CONFIG, CONFIG_DOC)
    append_jsonl(run / METRICS, {"iteration": 6, "test_error": 50.0})  # killed before last.pt
    state = inspect_run_dir(run, parse_run_config(CONFIG_DOC), target=36, resume=True)
    assert state.checkpoint is None and "starting it from iteration 0" in state.notes[-1]


# --- a full disk at the metrics append ---------------------------------------------------------


def test_a_full_disk_at_the_metrics_append_is_one_error_and_leaves_no_torn_line(
    tmp_path, monkeypatch
):
    path = tmp_path / METRICS
    append_jsonl(path, {"iteration": 6})
    real_write = os.write

    def half_then_full(fd: int, data) -> int:
        real_write(fd, bytes(data[:5]))  # part of the line reaches the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(ReproError, match="No space left on device.*free disk space"):
        append_jsonl(path, {"iteration": 12})
    monkeypatch.undo()
    assert path.read_text() == '{"iteration": 6}\n'


# --- special files given as paths ------------------------------------------------------------


def test_special_paths_are_named_for_what_they_are(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    assert "symbolic link loop" in str(path_problem(loop))
    assert "FIFO" in str(path_problem(fifo))
    assert "character device" in str(path_problem("/dev/zero"))
    assert "symbolic link to nothing" in str(path_problem(dangling))
    assert path_problem(tmp_path / "absent") == "does not exist"
    assert "folder" in str(path_problem(tmp_path))
    for path in (loop, fifo, Path("/dev/zero")):  # read_json neither blocks nor fills memory
        with pytest.raises(ReproError) as info:
            read_json(path)
        assert "does not exist" not in str(info.value)


# --- run files get the umask's mode, not 0600 ----------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_written_atomically_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        append_jsonl(tmp_path / "m.jsonl", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.json", "m.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_a_full_disk_at_a_training_runs_metrics_append_is_one_line_and_resumable(
    synthetic_cifar, tmp_path, capsys, monkeypatch
):
    from cli_helpers import one_clear_line
    from trainer_helpers import run_cli, tiny_args

    out = tmp_path / "run"
    real_write = os.write

    def full_at_metrics(fd: int, data) -> int:
        if b'"iteration": 12' in bytes(data):  # the second evaluation's record
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_at_metrics)
    rc = run_cli(tiny_args(synthetic_cifar, out, "--max-steps", "18"))
    line = one_clear_line(rc, *capsys.readouterr())
    assert "cannot append to" in line and "No space left on device" in line
    assert [r["iteration"] for r in read_metrics(out)] == [6]
    assert (out / METRICS).read_text().endswith("\n")  # no torn line
    monkeypatch.undo()
    assert run_cli(tiny_args(synthetic_cifar, out, "--max-steps", "18")) == 0  # space freed
    assert [r["iteration"] for r in read_metrics(out)] == [6, 12, 18]
