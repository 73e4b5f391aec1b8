"""scripts/gpu-check.sh (issue #26): the file limits of what comes back from the GPU machine, the
recording of failed and overrunning stages, the summary, and (slow) the whole CPU rehearsal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # scripts/ is not an installed package: PYTHONPATH=. as the script
    sys.path.insert(0, str(ROOT))

from scripts.gpu_check.__main__ import main  # noqa: E402
from scripts.gpu_check.common import (  # noqa: E402
    FAIL_ENV,
    FILES,
    MAX_BYTES,
    STAGES,
    TITLES,
    forced_failure,
    read_stage,
    set_status,
)
from scripts.gpu_check.limits import limit_problems, shrink_log  # noqa: E402
from scripts.gpu_check.pytest_timebox import DEADLINE_ENV, RECORD_ENV  # noqa: E402
from scripts.gpu_check.summary import render  # noqa: E402

SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def files(folder: Path, names: list[str]) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    return folder


# --- the file limits: at most 8 files, 2 folders deep, 16 MiB each -----------------------------


def test_eight_files_two_folders_deep_keep_the_limits(tmp_path):
    names = ["summary.md", *FILES.values(), "a/b/c.txt"][:8]
    assert limit_problems(files(tmp_path, names)) == []


def test_a_ninth_file_breaks_the_limits(tmp_path):
    out = files(tmp_path, [f"f{i}.json" for i in range(9)])
    assert any("9 files" in p for p in limit_problems(out))


def test_a_file_three_folders_deep_breaks_the_limits(tmp_path):
    out = files(tmp_path, ["a/b/c/deep.txt"])
    assert limit_problems(out) == ["a/b/c/deep.txt is 3 folders deep (at most 2)"]


def test_a_file_over_16_mib_breaks_the_limits(tmp_path):
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no 16 MiB written
    assert any("big.json has" in p for p in limit_problems(tmp_path))


def test_a_log_near_the_limit_loses_its_middle_and_keeps_head_and_tail(tmp_path):
    (tmp_path / "log.txt").write_bytes(b"head\n" + b"x" * 5000 + b"\ntail\n")
    assert shrink_log(tmp_path, keep=1000)
    text = (tmp_path / "log.txt").read_text()
    assert text.startswith("head") and text.endswith("tail\n") and "bytes of the log cut" in text
    assert len(text) < 1100 and not shrink_log(tmp_path, keep=2000)


def test_a_link_breaks_the_limits(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert limit_problems(tmp_path) == ["link is not a plain file or folder"]


# --- stage records: failed, timed out, ok; the summary names every stage ------------------------


def finish(out: Path, stage: str, rc: int) -> str:
    argv = ["finish", stage, "--out", str(out), "--rc", str(rc), "--milliseconds", "1500"]
    assert main([*argv, "--budget", "20"]) == 0
    return read_stage(out, stage)["stage"]["status"]


def test_a_stage_error_is_kept_and_a_timeout_is_called_one(tmp_path, capsys):
    set_status(tmp_path, "ladder", status="failed", error="RuntimeError: boom\nsecond line")
    assert finish(tmp_path, "ladder", 1) == "failed"
    assert read_stage(tmp_path, "ladder")["stage"]["error"] == "RuntimeError: boom second line"
    assert finish(tmp_path, "memory", 124) == "timed out"
    assert "overran its 20 s budget" in read_stage(tmp_path, "memory")["stage"]["error"]
    assert finish(tmp_path, "bench", 0) == "ok"
    assert "stage 2 ladder: failed in 1.5 s of 20 s: RuntimeError: boom" in capsys.readouterr().out


def test_a_crash_without_a_record_takes_its_error_from_the_log(tmp_path):
    log = "=== stage 3 memory (budget 20 s) 00:00:00 ===\nstarting\nSegmentation fault\n"
    (tmp_path / "log.txt").write_text(log)
    assert finish(tmp_path, "memory", 139) == "failed"
    assert read_stage(tmp_path, "memory")["stage"]["error"] == "Segmentation fault"


def test_the_summary_names_every_stage_before_any_has_run(tmp_path):
    text = render(tmp_path)
    for i, stage in enumerate(STAGES, 1):
        assert f"## {i} {TITLES[stage]}" in text
    assert text.count("not run yet") == len(STAGES)


def test_forced_failure_hits_only_the_named_stage(monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "memory, env:hang")
    forced_failure("ladder", 1)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        forced_failure("memory", 1)


# --- the pytest plugin: no test starts after the deadline; finished benchmarks recorded at once ---

PLUGIN = ("-p", "scripts.gpu_check.pytest_timebox")


def test_no_test_starts_after_the_deadline(pytester, monkeypatch):
    pytester.makepyfile("def test_one(): pass\n\ndef test_two(): pass\n")
    quick = (*PLUGIN, "-p", "no:benchmark", "-p", "no:hypothesispytest")
    monkeypatch.setenv(DEADLINE_ENV, str(time.time() - 1))
    late = pytester.runpytest(*quick)
    assert late.ret == 2 and "time box" in late.stdout.str()
    late.assert_outcomes()
    monkeypatch.setenv(DEADLINE_ENV, str(time.time() + 600))
    pytester.runpytest(*quick).assert_outcomes(passed=2)


@pytest.mark.slow  # pytest-benchmark describes the machine (cpuinfo): seconds
def test_each_finished_benchmark_is_recorded_at_once(pytester, monkeypatch, tmp_path):
    pytester.makepyfile(
        "def test_b(benchmark):\n"
        "    benchmark.pedantic(lambda: None, rounds=2)\n"
        "    benchmark.extra_info['images_per_s'] = 5.0\n"
    )
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "finished.jsonl"))
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    [line] = (tmp_path / "finished.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["name"] == "test_b" and record["stats"]["rounds"] == 2
    assert record["extra_info"] == {"images_per_s": 5.0}


# --- the command line: one clear line for bad input, the data recipe in --help -------------------


def script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_help_gives_the_data_carrier_recipe_and_the_budgets():
    r = script("--help")
    assert r.returncode == 0
    assert "mkdir -p .carry && cp -r ../shared/data/cifar-10-mini .carry/" in r.stdout
    assert "--data-root .carry/cifar-10-mini" in r.stdout
    assert "env 70, ladder 160, memory 40, training 150, bench 70 = 490 s" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "OUT_DIR is required"),
        (("{tmp}/o", "--bogus"), "unknown option --bogus"),
        (("{tmp}/o", "--data-root", "{tmp}/none"), "--data-root {tmp}/none is not a folder"),
        (("{tmp}/full",), "is not empty"),
    ],
)
def test_bad_arguments_are_one_line_and_touch_nothing(tmp_path, args, message):
    files(tmp_path, ["full/left-over.txt"])
    r = script(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message.format(tmp=tmp_path) in r.stderr
    assert not (tmp_path / "o" / "summary.md").exists()
    assert os.listdir(tmp_path / "full") == ["left-over.txt"]


# --- the rehearsal (slow): the whole check on the CPU ---------------------------------------------


def rehearse(
    tmp_path: Path, mini_root: Path, fail: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """The rehearsal, its budgets (sized for 2 quiet cores) scaled by the machine's load, at
    least 1.5x: what is tested is the plumbing; speed goals are no test's business
    (CONTRIBUTING.md), and a torch start-up takes seconds more on a cold or busy machine."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, FAIL_ENV: fail}
    env["GPU_CHECK_WORK"] = str(tmp_path / "work")
    busy = os.getloadavg()[0] / (os.cpu_count() or 1)
    env["GPU_CHECK_BUDGET_SCALE"] = f"{min(max(busy, 1.5), 5.0):.2f}"
    cmd = ["bash", str(SCRIPT), str(out), "--rehearse", "--data-root", str(mini_root)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    print(f"rehearsal: {time.monotonic() - t0:.0f} s, budgets x{env['GPU_CHECK_BUDGET_SCALE']}")
    print(r.stdout)
    return r, out


@pytest.mark.slow
def test_the_rehearsal_records_failing_and_overrunning_stages_and_goes_on(tmp_path, mini_root):
    """Every stage but the last made to fail (memory to hang past its budget): each is recorded
    as such, and the benchmarks still run and give their figures. Failing on purpose keeps this
    test short; the passing stages' figures are the next test's business."""
    r, out = rehearse(tmp_path, mini_root, "env,ladder,memory:hang,training")
    assert r.returncode == 1, r.stderr
    assert limit_problems(out) == []
    listing = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(listing) <= 8 and {"summary.md", "log.txt"} <= {str(p) for p in listing}
    status = {s: read_stage(out, s).get("stage", {}) for s in STAGES}
    for stage in ("env", "ladder", "training"):
        assert status[stage]["status"] == "failed"
        assert "failed on purpose" in status[stage]["error"]
    assert status["memory"]["status"] == "timed out"
    # the stage after them ran in full: its figures and a final status
    assert status["bench"]["status"] == "ok"
    assert all(f["images_per_s"] > 0 for f in read_stage(out, "bench")["figures"])
    summary = (out / "summary.md").read_text()
    for i, stage in enumerate(STAGES, 1):
        assert f"## {i} {TITLES[stage]}" in summary
        assert f"| {i} | {TITLES[stage]} | {status[stage]['status']} |" in summary
    assert "failed on purpose" in summary


@pytest.mark.slow
def test_the_rehearsal_passes_with_every_stage_figure(tmp_path, mini_root):
    r, out = rehearse(tmp_path, mini_root, "")
    summary = (out / "summary.md").read_text()
    assert r.returncode == 0, summary
    assert limit_problems(out) == []
    assert "REHEARSAL on the CPU" in summary
    env = read_stage(out, "env")
    assert env["pytest"]["tests"] > 0 and env["repro_env"]["versions"]["torch"]
    rungs = read_stage(out, "ladder")["rungs"]
    assert rungs["fp32-nchw"]["train_images_per_s"] > 0 and rungs["fp32-nchw"]["eval_images_per_s"]
    cases = read_stage(out, "memory")["cases"]
    assert all(c["status"] == "ok" and c["step_seconds"] > 0 for c in cases.values())
    training = read_stage(out, "training")
    runs = [*training["parallel"]["runs"].values(), *training["sequential"]["runs"].values()]
    assert any(run.get("hours_200_epochs", 0) > 0 for run in runs)
    bench = json.loads((out / "benchmarks.json").read_text())
    assert bench["benchmarks"] and all(f["images_per_s"] > 0 for f in bench["figures"])
