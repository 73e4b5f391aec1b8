"""`repro data verify` / `repro data download` through repro.cli.main: reports, one-line errors
with exit 2 and no traceback, and an offline download that leaves nothing half-written behind."""

from __future__ import annotations

import json
import pickle
import urllib.error
from pathlib import Path

import pytest
from data_helpers import write_batch, write_synthetic

from repro.cli import data as data_cli
from repro.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repro data: error: ")
    return lines[0]


def test_verify_mini_json(mini_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify", "--root", str(mini_root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"root", "train", "test", "official", "classes", "checksums"} <= rep.keys()
    assert rep["official"] is False and rep["subset"] is True
    assert rep["train"]["count"] == 5085 and rep["test"]["count"] == 1017
    assert rep["classes"][0] == "airplane" and len(rep["classes"]) == 10
    assert sum(rep["train"]["per_class"].values()) == 5085
    assert rep["test"]["per_class"]["frog"] == 114
    assert set(rep["checksums"]) == {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch"}
    assert not any(c["ok"] for c in rep["checksums"].values())


def test_verify_text_and_require_official(
    mini_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "verify", "--data-root", str(mini_root)]) == 0
    out = capsys.readouterr().out
    assert "SUBSET" in out and "5085" in out and "differs from official" in out
    assert main(["data", "verify", "--root", str(mini_root), "--require-official"]) == 1


def test_verify_uses_repro_data_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_synthetic(tmp_path / "d", per_batch=3, n_test=2)
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "d"))
    assert main(["data", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["count"] == 15


@pytest.mark.parametrize(
    ("how", "fragment"),
    [
        ("missing_folder", "data folder does not exist"),
        ("missing_batch", "data_batch_2: missing batch file"),
        ("truncated", "data_batch_2: cannot read batch file (truncated or not a pickle"),
        ("shape", "data_batch_2: 'data' has shape (2, 100), expected (N, 3072)"),
        ("labels", "data_batch_2: labels out of range 0..9"),
        ("count", "data_batch_2: count mismatch: 2 images but 5 labels"),
    ],
)
def test_verify_bad_data_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, fragment: str
) -> None:
    import numpy as np

    root = tmp_path / "d"
    if how != "missing_folder":
        write_synthetic(root, per_batch=2, n_test=2)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    if how == "missing_batch":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-50])
    elif how == "shape":
        write_batch(path, np.zeros((2, 100), dtype=np.uint8), [0, 1])
    elif how == "labels":
        write_batch(path, np.zeros((2, 3072), dtype=np.uint8), [0, 12])
    elif how == "count":
        write_batch(path, np.zeros((2, 3072), dtype=np.uint8), [0, 1, 2, 3, 4])
    line = _one_line_error(capsys, ["data", "verify", "--root", str(root)])
    assert fragment in line


def test_debug_shows_traceback(tmp_path: Path) -> None:
    from repro.errors import ReproError

    with pytest.raises(ReproError):
        main(["data", "--debug", "verify", "--root", str(tmp_path / "none")])


def test_download_offline_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    def offline(url: str, download_root: str, *args: object, **kwargs: object) -> None:
        # leave a half-written archive and folder behind, as a dropped connection would
        Path(download_root, "cifar-10-python.tar.gz").write_bytes(b"partial")
        folder = Path(download_root, "cifar-10-batches-py")
        folder.mkdir()
        (folder / "data_batch_1").write_bytes(pickle.dumps({"data": 1}))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    root = tmp_path / "data" / "cifar10"
    line = _one_line_error(capsys, ["data", "download", "--root", str(root)])
    assert "could not download CIFAR-10" in line and "name resolution" in line
    assert "place the files by hand" in line and "cifar-10-batches-py/data_batch_1" in line
    assert not root.exists()
    assert not (tmp_path / "data").exists()  # the parent it made, with the temp folder in it
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # and a later load does not mistake anything for a good copy
    line = _one_line_error(capsys, ["data", "verify", "--root", str(root)])
    assert "data folder does not exist" in line


def test_download_moves_a_verified_copy_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from repro.data import cifar10 as cifar10_mod

    def fake_download(dest: Path) -> None:
        write_synthetic(dest, per_batch=2, n_test=2)

    monkeypatch.setattr(data_cli, "_torchvision_download", fake_download)
    root = tmp_path / "data" / "cifar10"
    # a subset is refused (a real download must verify as official) and nothing is left
    _one_line_error(capsys, ["data", "download", "--root", str(root)])
    assert not root.exists() and not (tmp_path / "data").exists()

    import hashlib

    probe = tmp_path / "probe"
    write_synthetic(probe, per_batch=2, n_test=2)
    sums = {
        n: hashlib.md5((probe / "cifar-10-batches-py" / n).read_bytes()).hexdigest()
        for n in cifar10_mod.OFFICIAL_MD5
    }
    monkeypatch.setattr(cifar10_mod, "OFFICIAL_MD5", sums)
    assert main(["data", "download", "--root", str(root)]) == 0
    assert "downloaded:" in capsys.readouterr().out
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar10"]
    assert main(["data", "download", "--root", str(root)]) == 0  # already there: no-op
    assert "already present" in capsys.readouterr().out


def test_a_failed_download_keeps_the_folders_that_were_there_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(dest: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_cli, "_torchvision_download", offline)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine\n")
    root = tmp_path / "data" / "deep" / "cifar10"
    line = _one_line_error(capsys, ["data", "download", "--root", str(root)])
    assert "could not download CIFAR-10" in line
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["notes.txt"]


def test_require_official_on_a_subset_says_why_it_exits_1(
    mini_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "verify", "--root", str(mini_root), "--require-official"]) == 1
    out, err = capsys.readouterr()
    assert "SUBSET" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "is a subset (5085 train / 1017 test images)" in lines[0]
    assert "--require-official" in lines[0] and "repro data download --root" in lines[0]


@pytest.mark.parametrize(("empty", "split"), [("train", "training"), ("test", "test")])
def test_verify_fails_on_a_copy_with_an_empty_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], empty: str, split: str
) -> None:
    if empty == "train":
        write_synthetic(tmp_path / "d", per_batch=0, n_test=3)
    else:
        write_synthetic(tmp_path / "d", per_batch=3, n_test=0)
    line = _one_line_error(capsys, ["data", "verify", "--root", str(tmp_path / "d")])
    assert f"the {split} split has 0 images" in line and "download the data again" in line


def test_verify_names_a_folder_where_a_batch_file_should_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_synthetic(tmp_path / "d", per_batch=2, n_test=2)
    batch = tmp_path / "d" / "cifar-10-batches-py" / "test_batch"
    batch.unlink()
    batch.mkdir()
    line = _one_line_error(capsys, ["data", "verify", "--root", str(tmp_path / "d")])
    assert "test_batch: is a folder, not a batch file" in line and "missing" not in line
