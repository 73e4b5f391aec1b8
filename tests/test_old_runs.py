"""Runs written before the restructuring (commit e6e8522; tests/fixtures/old_format/README.md)
still resume, report and give the same numbers: the run-directory format is a contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from data_helpers import write_cifar10
from trainer_helpers import assert_matches_other_machine, metrics_without_timing, run_cli

from repro.report.report import write_report
from repro.train.checkpoint import load_checkpoint

OLD = Path(__file__).resolve().parent / "fixtures" / "old_format"


def _comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records]


def _resume(run: Path, data: Path, max_steps: int) -> None:
    args = ["train", "--out", str(run), "--resume", "--max-steps", str(max_steps)]
    assert run_cli([*args, "--data-root", str(data), "--quiet"]) == 0


def test_an_old_run_cut_by_max_steps_resumes_to_the_old_codes_metrics(tmp_path: Path) -> None:
    """Resumed here, the old run continues to the numbers the old code wrote on its machine: the
    schedule exactly, the floats to the stated cross-machine tolerance (trainer_helpers)."""
    run = tmp_path / "run"
    shutil.copytree(OLD / "run", run)
    data = write_cifar10(tmp_path / "data")  # the same seeded synthetic set the old run used
    _resume(run, data, 36)
    expected = json.loads((OLD / "continued_metrics.json").read_text())
    # The images behind each error: 90 training images (6 steps of 16 = 1 epoch), 10 val, 20 test.
    sizes = {"train": 90, "val": 10, "test": 20}
    assert_matches_other_machine(metrics_without_timing(run), expected, sizes)
    final = load_checkpoint(run / "final.pt")
    assert final["iteration"] == 36 and final["stop_reason"] == "schedule"


def test_an_old_run_resumed_twice_equals_it_resumed_once_bit_for_bit(tmp_path: Path) -> None:
    """On one machine the resume is exact: 12 -> 24 -> 36 gives the floats and weights of 12 -> 36."""
    data = write_cifar10(tmp_path / "data")
    once, twice = tmp_path / "once", tmp_path / "twice"
    shutil.copytree(OLD / "run", once)
    shutil.copytree(OLD / "run", twice)
    _resume(once, data, 36)
    _resume(twice, data, 24)
    _resume(twice, data, 36)
    assert metrics_without_timing(twice) == metrics_without_timing(once)
    weights = [load_checkpoint(r / "final.pt")["model"] for r in (once, twice)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _report_body(text: str) -> list[str]:
    """The report without the lines that name where it ran, without the Fig. 7 image line
    and its blank line (the fixture keeps no PNG; see its README), and without what issue 12
    redesigned: the verdicts' calibration sections (new), the deviations (now derived field by
    field) and the results table's rows (its reference columns became the preset's expected
    value); nor the claim counts and check statuses issue 22 put first (the verdicts were
    redesigned: PASS only with their defining claims); tests/test_report.py checks those."""
    lines = [line for line in text.splitlines() if not line.startswith("Run directory:")]
    if lines and any(x.startswith("**Claims: ") for x in lines):
        i = next(n for n, x in enumerate(lines) if x.startswith("**Claims: "))
        del lines[i : i + 4]  # the counts, a blank line, the checks' statuses, a blank line
    start = "## Operating characteristics" if "## Operating characteristics" in lines else None
    del lines[lines.index(start or "## Deviations from the paper") : lines.index("## Recipe")]
    results = lines.index("## Results (Table 6 style)")
    curves = lines.index("## Training curves (Fig. 6 style)")
    lines[results:curves] = [x for x in lines[results:curves] if not x.startswith("|")]
    if "![layer responses](layer_response.png)" in lines:
        i = lines.index("![layer responses](layer_response.png)")
        del lines[i : i + 2]
    return lines


def _old_matrix(tmp_path: Path) -> Path:
    root = tmp_path / "core-smoke"
    shutil.copytree(OLD / "core-smoke", root)
    for rel in (root / "FINISHED").read_text().split():
        (root / rel).write_bytes(
            b""
        )  # the checkpoints were left out for size; only existence counts
    return root


def test_an_old_matrix_reports_as_the_old_code_did(tmp_path: Path) -> None:
    report = write_report(_old_matrix(tmp_path), tmp_path / "report")
    new, old = report.read_text(), (OLD / "core-smoke-report.md").read_text()
    new_body, old_body = _report_body(new), _report_body(old)
    # The recipe table now lists every recipe field (derived from the Recipe dataclass): compare
    # it as a set of rows, the old ones included; everything else line for line.
    start = old_body.index("## Recipe")
    end = old_body.index("## Data")
    assert new_body[: new_body.index("## Recipe")] == old_body[:start]
    assert set(old_body[start:end]) <= set(new_body[new_body.index("## Recipe") :])
    assert new_body[new_body.index("## Data") :] == old_body[end:]


@pytest.mark.slow
def test_same_seed_gives_the_old_codes_metrics_on_the_real_subset(
    mini_root: Path, tmp_path: Path
) -> None:
    """Deterministic CPU training of ResNet-20, same seed: the old code's first ten steps.

    Only the training loss and error of steps 1-10 are compared, to 1e-3 and two images: these
    steps amplify rounding little (measured against the fixture: 1.3e-4 here, 2e-4 under
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2), while a wrong seed moves the loss by 9e-2
    and lr 0.055 for 0.05 by 5.5e-3. Later records and the test metrics amplify the CPU's rounding
    (test loss 1.4 % apart after 10 steps under AVX2, 1.9 % after 30 here) and are exact only on
    one machine: the bit-for-bit resume tests above and in test_resume.py assert that."""
    args = [
        "train",
        "--model",
        "resnet20",
        "--recipe",
        "common",
        "--epochs",
        "1",
        "--max-steps",
        "30",
        "--eval-every",
        "10",
        "--batch-size",
        "128",
        "--lr",
        "0.05",
        "--deterministic",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--seed",
        "3",
        "--quiet",
        "--data-root",
        str(mini_root),
        "--out",
        str(tmp_path / "det"),
    ]
    assert run_cli(args) == 0
    expected = json.loads((OLD / "determinism_resnet20_seed3.json").read_text())[0]
    first = _comparable(metrics_without_timing(tmp_path / "det"))[0]
    assert first["iteration"] == expected["iteration"] == 10 and first["lr"] == expected["lr"]
    assert first["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-3)
    assert abs(first["train_error"] - expected["train_error"]) <= 2 * 100 / 1280  # 10 x 128 images
