"""Loading CIFAR-10 from the official pickle layout: the real mini set, synthetic round trips,
root resolution, splits, normalisation constants and every bad-data error message."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import write_batch, write_synthetic

from repro.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CLASSES,
    get_split,
    load_cifar10,
    resolve_data_root,
    train_val_indices,
)
from repro.data import cifar10 as cifar10_mod
from repro.errors import ReproError


@pytest.fixture(scope="module")
def mini(mini_root: Path):
    return load_cifar10(mini_root)


# --- the real mini set ---------------------------------------------------------------------


def test_mini_set_counts_and_types(mini) -> None:
    assert mini.num_train == 5085 and mini.num_test == 1017
    assert mini.official is False
    assert mini.classes == CLASSES
    for images, labels in (
        (mini.train_images, mini.train_labels),
        (mini.test_images, mini.test_labels),
    ):
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert labels.dtype == torch.int64
        assert int(labels.min()) == 0 and int(labels.max()) == 9
    assert torch.bincount(mini.test_labels).tolist() == [
        105,
        93,
        100,
        104,
        92,
        87,
        114,
        102,
        110,
        110,
    ]
    assert "SUBSET" in mini.summary() and "5085" in mini.summary()
    assert not any(c.ok for c in mini.checksums.values())


def test_mini_mean_std_close_to_published_constants(mini) -> None:
    x = mini.train_images.to(torch.float64) / 255
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(CIFAR10_MEAN, dtype=torch.float64), atol=0.005)
    assert torch.allclose(std, torch.tensor(CIFAR10_STD, dtype=torch.float64), atol=0.005)


def test_root_may_be_the_batches_folder_itself(mini_root: Path, mini) -> None:
    direct = load_cifar10(mini_root / "cifar-10-batches-py")
    assert torch.equal(direct.train_images, mini.train_images)
    assert direct.root == mini.root


def test_paper_split_on_mini(mini) -> None:
    x45, y45 = get_split(mini, "train45k")
    x5, y5 = get_split(mini, "val5k")
    assert len(y5) == round(0.1 * 5085) and len(y45) + len(y5) == 5085
    assert x45.dtype == torch.uint8 and x5.shape[1:] == (3, 32, 32)
    # stratified: each class contributes its 10% share (within one image)
    share = torch.bincount(mini.train_labels, minlength=10).double() * 0.1
    assert (torch.bincount(y5, minlength=10).double() - share).abs().max() < 1.0
    assert get_split(mini, "train")[0] is mini.train_images
    assert get_split(mini, "test")[1] is mini.test_labels


# --- synthetic copies ------------------------------------------------------------------------


def test_synthetic_round_trip_is_exact(tmp_path: Path) -> None:
    arrays = write_synthetic(tmp_path, per_batch=7, n_test=5)
    data = load_cifar10(tmp_path)
    assert np.array_equal(data.train_images.numpy(), arrays["train_images"])
    assert np.array_equal(data.train_labels.numpy(), arrays["train_labels"])
    assert np.array_equal(data.test_images.numpy(), arrays["test_images"])
    assert np.array_equal(data.test_labels.numpy(), arrays["test_labels"])
    assert data.num_train == 35 and data.official is False


def test_pixel_layout_is_rgb_planes_row_major(tmp_path: Path) -> None:
    write_synthetic(tmp_path, per_batch=1, n_test=1)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 1024 + 32 * 5 + 7] = 200  # green plane, y=5, x=7
    write_batch(tmp_path / "cifar-10-batches-py" / "data_batch_1", row, [3])
    img = load_cifar10(tmp_path).train_images[0]
    assert img[1, 5, 7] == 200 and int(img.sum()) == 200


def test_resolve_data_root_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPRO_DATA", raising=False)
    assert resolve_data_root(None) == Path("data/cifar10")
    monkeypatch.setenv("REPRO_DATA", "/env/place")
    assert resolve_data_root(None) == Path("/env/place")
    assert resolve_data_root("/flag/place") == Path("/flag/place")


def test_full_size_copy_must_match_official_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic(tmp_path, per_batch=4, n_test=4)
    # pretend 20/4 is the official size, so a cheap synthetic copy counts as "full size"
    monkeypatch.setattr(cifar10_mod, "OFFICIAL_TRAIN_COUNT", 20)
    monkeypatch.setattr(cifar10_mod, "OFFICIAL_TEST_COUNT", 4)
    with pytest.raises(
        ReproError, match=r"full-size copy .*fails the official MD5 check.*data_batch_1"
    ):
        load_cifar10(tmp_path)


def test_official_md5_match_is_reported_official(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic(tmp_path, per_batch=3, n_test=3)
    import hashlib

    folder = tmp_path / "cifar-10-batches-py"
    sums = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in cifar10_mod.OFFICIAL_MD5}
    monkeypatch.setattr(cifar10_mod, "OFFICIAL_MD5", sums)
    data = load_cifar10(tmp_path)
    assert data.official is True and "official CIFAR-10" in data.summary()


# --- bad data --------------------------------------------------------------------------------


def _corrupt(tmp_path: Path, how: str) -> Path:
    write_synthetic(tmp_path, per_batch=4, n_test=4)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    good = np.zeros((4, 3072), dtype=np.uint8)
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "not_pickle":
        path.write_text("this is not a pickle\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "folder":
        path.unlink()
        path.mkdir()
    elif how == "not_dict":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif how == "shape":
        write_batch(path, np.zeros((4, 3, 32, 32), dtype=np.uint8), [0, 1, 2, 3])
    elif how == "dtype":
        write_batch(path, np.zeros((4, 3072), dtype=np.float32), [0, 1, 2, 3])
    elif how == "labels_range":
        write_batch(path, good, [0, 1, 10, 3])
    elif how == "labels_negative":
        write_batch(path, good, [0, -1, 2, 3])
    elif how == "count":
        write_batch(path, good, [0, 1, 2])
    return path


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"data_batch_3: missing batch file"),
        ("truncated", r"data_batch_3: cannot read batch file \(truncated or not a pickle"),
        ("not_pickle", r"data_batch_3: cannot read batch file \(truncated or not a pickle"),
        ("empty", r"data_batch_3: cannot read batch file \(empty: 0 bytes\); .*download it again"),
        ("folder", r"data_batch_3: is a folder, not a batch file; remove it"),
        ("not_dict", r"data_batch_3: not a CIFAR-10 batch"),
        ("shape", r"data_batch_3: 'data' has shape \(4, 3, 32, 32\), expected \(N, 3072\)"),
        ("dtype", r"data_batch_3: 'data' has dtype float32, expected uint8"),
        ("labels_range", r"data_batch_3: labels out of range 0\.\.9 \(1 bad, e\.g\. 10\)"),
        ("labels_negative", r"data_batch_3: labels out of range 0\.\.9 \(1 bad, e\.g\. -1\)"),
        ("count", r"data_batch_3: count mismatch: 4 images but 3 labels"),
    ],
)
def test_bad_batch_file_gives_clear_error(tmp_path: Path, how: str, message: str) -> None:
    _corrupt(tmp_path, how)
    with pytest.raises(ReproError, match=message):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("how", ["empty", "folder", "not_dict", "names"])
def test_a_bad_batches_meta_gives_one_clear_error(tmp_path: Path, how: str) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    if how == "empty":
        meta.write_bytes(b"")
    elif how == "folder":
        meta.unlink()
        meta.mkdir()
    elif how == "not_dict":
        meta.write_bytes(pickle.dumps(["airplane"] * 10))
    else:
        meta.write_bytes(pickle.dumps({"label_names": ["airplane"] * 9}))
    message = {
        "empty": r"batches\.meta: cannot read batch file \(empty: 0 bytes\)",
        "folder": r"batches\.meta: is a folder, not a batch file",
        "not_dict": r"batches\.meta: not a CIFAR-10 batches\.meta \(expected a dict with 'label_names'",
        "names": r"batches\.meta: 9 class names, expected 10",
    }[how]
    with pytest.raises(ReproError, match=message):
        load_cifar10(tmp_path)


def test_a_pipe_where_a_batch_file_should_be_is_refused_without_reading_it(tmp_path: Path) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.unlink()
    os.mkfifo(path)  # reading it would block forever
    with pytest.raises(ReproError, match=r"data_batch_2: not a regular file \(a pipe, socket"):
        load_cifar10(tmp_path)


def test_an_unreadable_batch_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(
        ReproError, match=r"data_batch_1: cannot read the file \(Permission denied\); check its"
    ):
        load_cifar10(tmp_path)


def test_a_copy_without_batches_meta_uses_the_standard_names(tmp_path: Path) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    assert load_cifar10(tmp_path).classes == CLASSES


@pytest.mark.parametrize(
    ("per_batch", "n_test", "message"),
    [
        (0, 3, r"the training split has 0 images \(data_batch_1\.\.5 hold none\)"),
        (3, 0, r"the test split has 0 images \(test_batch holds none\)"),
        (0, 0, r"the training split has 0 images"),
    ],
)
def test_a_copy_with_an_empty_split_is_refused(
    tmp_path: Path, per_batch: int, n_test: int, message: str
) -> None:
    write_synthetic(tmp_path, per_batch=per_batch, n_test=n_test)
    with pytest.raises(ReproError, match=message + r".*download the data again"):
        load_cifar10(tmp_path)


def test_one_empty_training_batch_is_still_a_subset(tmp_path: Path) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    write_batch(
        tmp_path / "cifar-10-batches-py" / "data_batch_4", np.zeros((0, 3072), np.uint8), []
    )
    assert load_cifar10(tmp_path).num_train == 8


def test_missing_folder_error(tmp_path: Path) -> None:
    with pytest.raises(
        ReproError, match=r"nowhere: data folder does not exist; run `repro data download"
    ):
        load_cifar10(tmp_path / "nowhere")


def test_folder_without_batches_error(tmp_path: Path) -> None:
    with pytest.raises(
        ReproError, match=r"no cifar-10-batches-py folder and no CIFAR-10 batch files"
    ):
        load_cifar10(tmp_path)


def test_missing_test_batch_error(tmp_path: Path) -> None:
    write_synthetic(tmp_path, per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ReproError, match=r"test_batch: missing batch file"):
        load_cifar10(tmp_path)


# --- the validation split helper -------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.0])
def test_train_val_indices_partition_and_seed(fraction: float) -> None:
    labels = torch.randint(0, 10, (1003,), generator=torch.Generator().manual_seed(1))
    tr, va = train_val_indices(labels, fraction, seed=3)
    assert len(va) == round(fraction * 1003)
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(1003))
    tr2, va2 = train_val_indices(labels, fraction, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    if fraction:
        assert not torch.equal(va, train_val_indices(labels, fraction, seed=4)[1])


def test_paper_split_is_45k_5k_on_full_size_labels() -> None:
    labels = torch.arange(50_000) % 10
    tr, va = train_val_indices(labels, 0.1, seed=0)
    assert len(tr) == 45_000 and len(va) == 5_000
    assert torch.bincount(labels[va]).tolist() == [500] * 10


def test_bad_fraction_and_split_name(mini) -> None:
    with pytest.raises(ReproError, match=r"validation fraction must be in \[0, 1\)"):
        train_val_indices(torch.zeros(10, dtype=torch.int64), 1.5)
    with pytest.raises(ReproError, match=r"unknown split 'val10k'"):
        get_split(mini, "val10k")
