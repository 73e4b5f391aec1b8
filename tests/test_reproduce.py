"""`repro reproduce`: presets refuse cleanly, failures are isolated, re-runs skip and resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import reproduce_args
from synthetic_runs import write_seed_run

from repro.cli import main
from repro.errors import ReproError
from repro.experiments import (
    EXPERIMENTS,
    MINI_EPOCHS,
    MINI_LR,
    MINI_MILESTONES,
    PRESETS,
    get_preset,
)
from repro.reproduce import runner
from repro.reproduce.runner import Job, reproduce, train_command

TESTS = Path(__file__).resolve().parent

FAKE_TRAINER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from synthetic_runs import FAITHFUL, write_seed_run
model, seed, out, fail_flag = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
Path(sys.argv[5]).parent.mkdir(parents=True, exist_ok=True)
with open(sys.argv[5], "a") as f:  # one mark per start of this run
    f.write("x")
write_seed_run(out, model, seed, {preset!r}, *FAITHFUL[model])
if model == "plain56" and not fail_flag.exists():
    fail_flag.write_text("failed once")
    (out / "final.pt").unlink()
    sys.exit(3)
"""


def fake_train_command(tmp: Path, preset: str):
    script = FAKE_TRAINER.format(tests=str(TESTS), preset=preset)

    def command(preset_obj, job: Job, data_root, device, threads) -> list[str]:
        marker = tmp / "calls" / f"{job.model}-seed{job.seed}"  # written by the trainer
        return [
            sys.executable,
            "-c",
            script,
            job.model,
            str(job.seed),
            str(job.out),
            str(tmp / f"failed-once-{job.model}-seed{job.seed}"),
            str(marker),
        ]

    return command


def calls(tmp: Path) -> dict[str, int]:
    return {p.name: len(p.read_text()) for p in (tmp / "calls").iterdir()}


def test_paper_preset_refuses_a_subset_in_one_line(synthetic_cifar: Path, tmp_path: Path, capsys):
    rc = main(
        [
            "reproduce",
            "--experiment",
            "core",
            "--preset",
            "paper",
            "--data-root",
            str(synthetic_cifar),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert "subset" in err and "--preset mini" in err and "--force" in err
    assert not (tmp_path / "run").exists()


def test_common_preset_refuses_without_cuda_or_full_data(synthetic_cifar: Path, tmp_path: Path):
    with pytest.raises(ReproError, match="preset common needs the full official data"):
        reproduce(
            "core",
            EXPERIMENTS["core"],
            get_preset("common"),
            tmp_path / "r",
            1,
            synthetic_cifar,
            device="cpu",
        )


def test_missing_data_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="does not exist"):
        reproduce(
            "core",
            EXPERIMENTS["core"],
            get_preset("smoke"),
            tmp_path / "r",
            1,
            tmp_path / "no-data",
        )


def test_mini_and_smoke_commands_carry_their_schedule_and_threads(tmp_path: Path) -> None:
    job = Job("resnet20", 2, tmp_path / "resnet20" / "seed2", tmp_path / "log")
    mini = train_command(PRESETS["mini"], job, tmp_path, "cpu", 1)
    joined = " ".join(mini)
    milestones = " ".join(map(str, MINI_MILESTONES))
    assert f"--epochs {MINI_EPOCHS}" in joined and f"--milestones {milestones}" in joined
    assert "--seed 2" in joined and "--threads 1" in joined and "--recipe common" in joined
    assert f"--lr {MINI_LR}" in joined and PRESETS["mini"].expected_config()["lr"] == MINI_LR
    smoke = train_command(PRESETS["smoke"], job, tmp_path, None, None)
    assert "--max-steps 3" in " ".join(smoke) and "--threads" not in smoke and "--lr" not in smoke


def test_failed_model_is_reported_others_finish_and_rerun_resumes_only_it(
    synthetic_cifar: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(runner, "train_command", fake_train_command(tmp_path, "mini"))
    out = tmp_path / "run"
    lines: list[str] = []
    args = ("core", EXPERIMENTS["core"], get_preset("mini"), out, 2, synthetic_cifar)
    assert reproduce(*args, parallel=2, echo=lines.append) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == ["plain56/seed0", "plain56/seed1"]
    assert summary["models"]["resnet56"]["final_test_error"]["n"] == 2
    assert summary["models"]["plain56"]["seeds"]["0"]["finished"] is False
    assert any("plain56 seed0: FAILED (exit 3)" in x for x in lines)

    lines.clear()
    assert reproduce(*args, parallel=2, echo=lines.append) == 0
    assert calls(tmp_path) == {
        f"{m}-seed{s}": 2 if m == "plain56" else 1 for m in EXPERIMENTS["core"] for s in (0, 1)
    }
    assert sum("skip" in x for x in lines) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["failed"] == []
    assert summary["models"]["plain56"]["final_test_error"]["std"] == 0.0
    assert summary["parallel"] == 2 and summary["wall_seconds"] > 0


def test_out_dir_of_another_run_is_refused_before_any_work(
    synthetic_cifar: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(runner, "train_command", fake_train_command(tmp_path, "mini"))
    out = tmp_path / "run"
    write_seed_run(out / "resnet20" / "seed0", "resnet20", 0, "smoke", 1.0, 2.0)
    with pytest.raises(
        ReproError, match=r"holds a different run \(config lr=0.1, preset mini wants 0.05"
    ):
        reproduce("core", EXPERIMENTS["core"], get_preset("mini"), out, 1, synthetic_cifar)
    assert not (tmp_path / "calls").exists()
    (out / "summary.json").write_text(json.dumps({"experiment": "table6", "preset": "mini"}))
    with pytest.raises(ReproError, match="holds experiment 'table6'"):
        reproduce("core", EXPERIMENTS["core"], get_preset("mini"), out, 1, synthetic_cifar)


def test_bad_seed_and_parallel_counts_are_refused(synthetic_cifar: Path, tmp_path: Path) -> None:
    for kw in ({"seeds": 0}, {"parallel": 0}):
        seeds = kw.get("seeds", 1)
        with pytest.raises(ReproError, match="must be at least 1"):
            reproduce(
                "core",
                EXPERIMENTS["core"],
                get_preset("smoke"),
                tmp_path,
                seeds,
                synthetic_cifar,
                parallel=kw.get("parallel", 1),
            )


@pytest.mark.slow
def test_smoke_matrix_end_to_end_trains_reports_and_passes_acceptance(
    tmp_path: Path, capsys
) -> None:
    import subprocess

    from data_helpers import write_cifar10

    synthetic_cifar = write_cifar10(tmp_path / "data", per_batch=26)  # 130 images: one batch of 128
    out, rep = tmp_path / "run", tmp_path / "report"
    argv = reproduce_args(synthetic_cifar, out, "--parallel", "2", "--device", "cpu")
    assert main(argv) == 0
    for model in EXPERIMENTS["core"]:
        assert (out / model / "seed0" / "final.pt").is_file()
    assert main(argv) == 0  # resumable: the second call trains nothing
    assert capsys.readouterr().out.count("skip") >= 4
    assert main(["report", str(out), "--out", str(rep)]) == 0
    text = (rep / "report.md").read_text()
    assert text.startswith("# SMOKE run (core)")
    assert (rep / "curves.png").stat().st_size > 0 and (rep / "summary.json").is_file()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(TESTS.parent / "acceptance"),
            "--run-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout
    assert "1 passed, 4 skipped" in res.stdout


def test_a_precision_asked_of_the_matrix_reaches_every_run_and_the_continue_command(
    tmp_path: Path,
) -> None:
    from repro.experiments import with_amp
    from repro.reproduce.runner import continue_command

    job = Job("resnet20", 0, tmp_path / "resnet20" / "seed0", tmp_path / "log")
    paper = PRESETS["paper"]
    assert "--amp" not in train_command(paper, job, tmp_path, None, None)  # fp32 by the recipe
    asked = train_command(with_amp(paper, "bf16"), job, tmp_path, None, None)
    assert asked[-2:] == ["--amp", "bf16"]
    again = continue_command("core", paper, tmp_path, 1, tmp_path, {"amp": "bf16"})
    assert again.endswith("--amp bf16")
    assert with_amp(paper, None) is paper
