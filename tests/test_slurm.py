"""`repro reproduce --launcher slurm` without a cluster: the sbatch script submitit would submit
(its own generator, not a fake scheduler), the job record, `--status`, and bad input in one line.
The jobs themselves run through submitit's local executor in tests/test_slurm_local.py."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from cli_helpers import one_clear_line, reproduce_args, run_repro
from synthetic_runs import write_seed_run

from repro.errors import ReproError
from repro.experiments import EXPERIMENTS, get_preset
from repro.reproduce import runner, slurm
from repro.reproduce.slurm import (
    RECORD,
    SlurmOptions,
    parse_time,
    sbatch_script,
    slurm_phase,
    submit_matrix,
)
from repro.store import RunLock, log_path, seed_dir

submitit = pytest.importorskip("submitit")

SLURM_ARGS = [
    "--launcher",
    "slurm",
    "--time",
    "1:30:00",
    "--partition",
    "gpu",
    "--account",
    "proj42",
    "--qos",
    "high",
    "--mem",
    "16G",
    "--constraint",
    "a100",
    "--cpus-per-run",
    "8",
    "--slurm-array-parallelism",
    "2",
]


def test_dry_run_prints_the_array_script_with_every_slurm_option_and_the_local_commands(
    synthetic_cifar: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    argv = reproduce_args(synthetic_cifar, out, *SLURM_ARGS, "--slurm-dry-run")
    rc, text, err = run_repro(capsys, *argv)
    assert rc == 0, err
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --time=90",
        "#SBATCH --account=proj42",
        "#SBATCH --qos=high",
        "#SBATCH --mem=16G",
        "#SBATCH --constraint=a100",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --array=0-3%2",  # 4 runs, at most 2 at once
        "#SBATCH --signal=USR2@120",  # the trainer's time to finish its step and save
        "#SBATCH --job-name=repro-core-smoke",
    ):
        assert line in text.splitlines(), line
    # each task's command is the one the local launcher builds, byte for byte
    preset = get_preset("smoke")
    for model in EXPERIMENTS["core"]:
        job = runner.Job(model, 0, seed_dir(out.resolve(), model, 0), log_path(out, model, 0))
        assert shlex.join(runner.train_command(preset, job, synthetic_cifar, None, None)) in text
    assert not out.exists()  # a dry run writes nothing


def test_dry_run_script_is_the_one_submitits_slurm_executor_writes(
    tmp_path: Path, monkeypatch
) -> None:
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    options = SlurmOptions(time="45", partition="p", gpus_per_run=1, account="a")
    params = options.sbatch_parameters("repro-core-smoke")
    executor = SlurmExecutor(tmp_path, max_num_timeout=slurm.MAX_TIMEOUT_REQUEUES)
    executor.update_parameters(**params)
    executor.parameters["map_count"] = 5  # what submitit sets for an array of 5
    theirs = executor._make_submission_file_text(executor._submitit_command_str, "uid")
    assert sbatch_script(executor.folder, params, 5) == theirs
    assert "#SBATCH --array=0-4%5" in theirs and "#SBATCH --time=45" in theirs


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--partition", "gpu"], "--partition applies to --launcher slurm only"),
        (["--slurm-dry-run"], "--slurm-dry-run applies to --launcher slurm only"),
        (["--launcher", "slurm", "--time", "9", "--parallel", "2"], "--parallel applies to"),
        (["--launcher", "slurm", "--time", "9", "--gpus", "0,1"], "--gpus applies to"),
        (["--launcher", "slurm"], "--launcher slurm needs --time"),
        (["--launcher", "slurm", "--time", "1:75:00"], "--time '1:75:00' is not a wall time"),
        (["--launcher", "slurm", "--time", "9", "--gpus-per-run", "2"], "one `repro train` uses"),
        (["--launcher", "slurm", "--time", "9", "--mem", "lots"], "--mem 'lots' is not a size"),
        (["--launcher", "slurm", "--time", "9", "--cpus-per-run", "0"], "at least 1"),
    ],
)
def test_bad_launcher_options_are_one_line_and_write_nothing(
    synthetic_cifar: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    line = one_clear_line(*run_repro(capsys, *reproduce_args(synthetic_cifar, out, *extra)))
    assert message in line
    assert not out.exists()


def test_without_sbatch_the_slurm_launcher_names_what_to_use_instead(
    synthetic_cifar: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "run"
    argv = reproduce_args(synthetic_cifar, out, "--launcher", "slurm", "--time", "10")
    line = one_clear_line(*run_repro(capsys, *argv))
    assert "no Slurm found here (sbatch and srun not on PATH)" in line
    assert "--launcher local" in line and "--slurm-dry-run" in line
    assert not out.exists()


def test_without_submitit_the_slurm_launcher_says_what_to_install(
    synthetic_cifar: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    argv = reproduce_args(synthetic_cifar, tmp_path / "run", "--launcher", "slurm", "--time", "9")
    line = one_clear_line(*run_repro(capsys, *argv))
    assert "pip install 'resnet-repro[slurm]'" in line and "--launcher local" in line


def test_status_of_a_folder_that_is_not_a_matrix_is_one_line(tmp_path: Path, capsys) -> None:
    line = one_clear_line(*run_repro(capsys, "reproduce", "--status", str(tmp_path)))
    assert "is not a `repro reproduce` run directory" in line
    line = one_clear_line(*run_repro(capsys, "reproduce", "--experiment", "core"))
    assert "--experiment and --preset are required" in line


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("1:30:00", 90), ("0:00:30", 1)])
def test_time_is_minutes_or_h_mm_ss_rounded_up(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes
    assert parse_time("2-00:00:00") == 2 * 24 * 60


@pytest.mark.parametrize("text", ["0", "-5", "1:60:00", "ninety", "0:00:00"])
def test_a_time_that_is_not_a_wall_time_is_refused(text: str) -> None:
    with pytest.raises(ReproError, match="is not a wall time"):
        parse_time(text)


def test_sacct_states_map_to_queued_running_ended() -> None:
    assert slurm_phase("PENDING") == slurm_phase("REQUEUED") == "queued"
    assert slurm_phase("RUNNING") == slurm_phase("COMPLETING") == "running"
    assert slurm_phase("CANCELLED by 4242") == slurm_phase("TIMEOUT") == "ended"
    assert slurm_phase("") == slurm_phase("UNKNOWN") == "unknown"


# ------------------------------------------------------------------ status and resubmission


def matrix(tmp_path: Path, cluster: str = "local") -> Path:
    """A smoke matrix (core) as the launcher leaves it: resnet20 done, resnet56 stopped by its
    preemption signal (last.pt, exit 143), plain56 failed (exit 1), plain20 never submitted."""
    out = tmp_path / "run"
    write_seed_run(seed_dir(out, "resnet20", 0), "resnet20", 0, "smoke", 1.0, 2.0)
    partial = seed_dir(out, "resnet56", 0)
    write_seed_run(partial, "resnet56", 0, "smoke", 1.0, 2.0)
    (partial / "final.pt").rename(partial / "last.pt")
    runs = {}
    for model, rc in (("resnet20", 0), ("resnet56", 143), ("plain56", 1)):
        log = log_path(out, model, 0)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{slurm.NOTE} t job 1: repro train exited with {rc}\n")
        runs[f"{model}/seed0"] = {"job_id": str(2**22 + 7), "log": str(log), "submitted": "t"}
    (out / RECORD).write_text(json.dumps({"cluster": cluster, "runs": runs}))
    summary = {"experiment": "core", "preset": "smoke", "seeds": [0], "failed": [], "status": "s"}
    summary["models"] = {m: {} for m in EXPERIMENTS["core"]}
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_status_shows_each_run_with_its_job_and_log(tmp_path: Path, capsys) -> None:
    out = matrix(tmp_path)
    rc, text, _ = run_repro(capsys, "reproduce", "--status", str(out))
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert rows["resnet20"][2:4] == ["done", "3/3"]
    assert rows["resnet56"][2] == "interrupted"
    assert rows["plain56"][2] == "failed"
    assert rows["plain20"][2:4] == ["not", "started"]
    assert rows["resnet20"][-1] == str(log_path(out, "resnet20", 0))
    assert rows["resnet20"][-2] == str(2**22 + 7)  # the job id
    assert "1 done, 1 failed, 1 interrupted, 1 not started" in text.splitlines()[0]


def test_a_run_whose_trainer_holds_its_folder_is_running_and_not_submitted_again(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch
) -> None:
    out = matrix(tmp_path)
    monkeypatch.setattr(slurm, "submit", lambda *a: pytest.fail("nothing may be submitted"))
    with RunLock(seed_dir(out, "resnet56", 0)):  # a live trainer, as `repro train` holds it
        assert slurm.matrix_status(out, echo=lambda _: None)["resnet56/seed0"] == "running"
        jobs = [
            runner.Job("resnet56", 0, seed_dir(out, "resnet56", 0), log_path(out, "resnet56", 0))
        ]
        lines: list[str] = []
        assert slurm.to_submit(jobs, slurm.read_record(out), lines.append) == []
        assert "still running" in lines[0] and "not submitted twice" in lines[0]


def test_a_job_whose_slurm_state_cannot_be_known_is_not_resubmitted(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch
) -> None:
    out = matrix(tmp_path, cluster="slurm")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sacct: the state is unknown
    (log_path(out, "resnet56", 0)).write_text(f"{slurm.NOTE} t job 1: started `repro train`\n")
    assert slurm.matrix_status(out, echo=lambda _: None)["resnet56/seed0"] == "unknown"
    options = SlurmOptions(time="9", gpus_per_run=0, cluster="local")
    with pytest.raises(
        ReproError, match=r"cannot tell whether job \d+ \(resnet56/seed0\) is still"
    ):
        submit_matrix(
            "core", EXPERIMENTS["core"], get_preset("smoke"), out, 1, synthetic_cifar, options
        )
    assert json.loads((out / RECORD).read_text())["cluster"] == "slurm"  # unchanged


def test_a_run_directory_of_another_matrix_is_refused_before_submitting(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    write_seed_run(seed_dir(out, "resnet20", 0), "resnet20", 0, "mini", 1.0, 2.0)
    monkeypatch.setattr(slurm, "submit", lambda *a: pytest.fail("nothing may be submitted"))
    options = SlurmOptions(time="9", gpus_per_run=0, cluster="local")
    with pytest.raises(ReproError, match="holds a different run"):
        submit_matrix(
            "core", EXPERIMENTS["core"], get_preset("smoke"), out, 1, synthetic_cifar, options
        )
    assert not (out / RECORD).exists() and not (out / "summary.json").exists()


# ------------------------------------------------------------------ the scheduler's word (issue 24)


def fake_slurm(tmp_path: Path, monkeypatch, **commands: str) -> None:
    """Slurm's client commands on PATH as small scripts: name -> bash body (only these exist)."""
    bin_dir = tmp_path / "fake-slurm-bin"
    bin_dir.mkdir()
    for name, body in commands.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def test_a_tasks_own_sacct_row_wins_over_a_stale_row_of_pending_tasks_in_any_order() -> None:
    rows = ["23_2|RUNNING", "23_[2-3,5%4]|PENDING", "23_0|COMPLETED", "23_0.batch|COMPLETED"]
    want = {"23_0": "COMPLETED", "23_2": "RUNNING", "23_3": "PENDING", "23_5": "PENDING"}
    assert slurm.parse_states("\n".join(rows)) == want
    assert slurm.parse_states("\n".join(reversed(rows))) == want
    assert slurm.parse_states("2_[1,3%1]|CANCELLED by 0\n7|FAILED") == {
        "2_1": "CANCELLED by 0",
        "2_3": "CANCELLED by 0",
        "7": "FAILED",
    }


def test_a_job_neither_squeue_nor_sacct_knows_has_ended_once_squeue_answered() -> None:
    jobs = ["47_0", "47_1", "47_2", "47_3"]
    queue = {"47_0": "RUNNING"}
    acct = {"47_0": "PENDING", "47_1": "COMPLETED", "47_3": "RUNNING"}  # sacct lags behind
    states = slurm.combine_states(jobs, queue, acct)
    assert states == {"47_0": "RUNNING", "47_1": "COMPLETED", "47_2": "GONE", "47_3": "GONE"}
    assert [slurm_phase(states[j]) for j in jobs] == ["running", "ended", "ended", "ended"]
    without_squeue = slurm.combine_states(jobs, None, acct)  # then sacct alone, and no guess
    assert [slurm_phase(without_squeue[j]) for j in jobs] == ["queued", "ended", "unknown"] + [
        "running"
    ]


def test_a_task_cancelled_while_pending_is_cancelled_and_submitted_again(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch
) -> None:
    out = matrix(tmp_path, cluster="slurm")  # every run's job id is 4194311
    record = json.loads((out / RECORD).read_text())
    record["runs"]["plain20/seed0"] = {"job_id": "47_2", "log": "x", "submitted": "t"}
    (out / RECORD).write_text(json.dumps(record))
    # squeue is empty and sacct has no row of 47_2 (a pending task's cancel leaves none)
    fake_slurm(tmp_path, monkeypatch, squeue="exit 0", sacct="echo '4194311|COMPLETED'")
    assert slurm.matrix_status(out, echo=lambda _: None)["plain20/seed0"] == "cancelled"
    unfinished = ("plain20", "resnet56", "plain56")  # as runner.plan_jobs leaves them
    jobs = [runner.Job(m, 0, seed_dir(out, m, 0), log_path(out, m, 0)) for m in unfinished]
    assert slurm.to_submit(jobs, slurm.read_record(out), print) == jobs  # none "unknown"


def test_squeue_knowing_none_of_the_jobs_is_an_answer_not_a_failure(
    tmp_path: Path, monkeypatch
) -> None:
    # `squeue -j 47` of a job it no longer holds: this error and exit 1 (`-j 47,48`: no rows)
    said = "slurm_load_jobs error: Invalid job id specified"
    fake_slurm(tmp_path, monkeypatch, squeue=f"echo '{said}' >&2; exit 1", sacct="exit 0")
    warnings: list[str] = []
    assert slurm.slurm_states(["47"], warnings.append) == {"47": "GONE"}
    assert warnings == []
    fake_slurm_down = "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1"
    (tmp_path / "fake-slurm-bin" / "squeue").write_text(f"#!/bin/bash\n{fake_slurm_down}\n")
    assert slurm.slurm_states(["47"], warnings.append) == {"47": ""}  # unknown: refuse
    assert len(warnings) == 1 and "Unable to contact" in warnings[0]


def test_a_queued_task_is_skipped_in_the_local_launchers_words(tmp_path: Path, monkeypatch) -> None:
    out = matrix(tmp_path, cluster="slurm")
    fake_slurm(tmp_path, monkeypatch, squeue="echo '4194311|PENDING'", sacct="exit 0")
    job = runner.Job("resnet56", 0, seed_dir(out, "resnet56", 0), log_path(out, "resnet56", 0))
    lines: list[str] = []
    assert slurm.to_submit([job], slurm.read_record(out), lines.append) == []
    assert lines == [
        "skip   resnet56 seed0: still queued as job 4194311; not submitted twice"
    ]  # as runner.plan_jobs says `skip   resnet20 seed0: finished ...`


def test_without_accounting_status_warns_once_and_still_answers(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = matrix(tmp_path, cluster="slurm")
    said = "sacct: error: Slurm accounting storage is disabled"
    fake_slurm(tmp_path, monkeypatch, squeue="exit 0", sacct=f"echo '{said}' >&2; exit 1")
    rc, text, err = run_repro(capsys, "reproduce", "--status", str(out))
    assert rc == 0 and err.strip().splitlines() == [
        f"warning: {said} (job states from what answered)"
    ]
    assert "unknown" not in text  # squeue answered: the jobs are not queued or running


@pytest.mark.parametrize(
    ("rc", "finished", "requeued"),
    [(143, False, True), (-15, False, True), (None, False, True), (0, False, False)]
    + [(143, True, False), (None, True, False), (1, False, False), (2, False, False)],
)
def test_only_an_unfinished_run_stopped_by_a_signal_is_requeued(
    rc: int | None, finished: bool, requeued: bool
) -> None:
    assert (slurm.no_requeue_reason(rc, finished) == "") is requeued


def test_a_finished_run_is_not_requeued_at_its_time_limit(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "run.log"
    run.mkdir()
    (run / "final.pt").write_bytes(b"")
    job = slurm.TrainJob([sys.executable, "-c", "pass", "--out", str(run)], str(log))
    assert job() == 0  # the trainer exited 0; then the job's USR2 arrives
    assert job.checkpoint() is None  # submitit: "checkpoint function returned None", no requeue
    assert "repro train exited with 0; the run is finished: not requeued" in log.read_text()
    (run / "final.pt").unlink()
    stopped = slurm.TrainJob([sys.executable, "-c", "exit(143)", "--out", str(run)], str(log))
    with pytest.raises(ReproError, match="exited with 143"):
        stopped()  # stopped by its SIGTERM: last.pt, exit 143
    assert stopped.checkpoint() is not None  # requeued: it resumes from last.pt
    assert log.read_text().splitlines()[-1].endswith("repro train exited with 143; requeued")


def test_an_attempt_killed_without_a_word_is_noted_by_the_next_one(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(f"{slurm.NOTE} t job 9 on h (pid 1): started `repro train` as pid 2: x\n")
    slurm.TrainJob([sys.executable, "-c", "pass"], str(log))()
    notes = [line for line in log.read_text().splitlines() if line.startswith(slurm.NOTE)]
    assert "the last attempt left no exit status: its job was killed" in notes[1]
    assert "started `repro train`" in notes[2] and "exited with 0" in notes[3]
    slurm.TrainJob([sys.executable, "-c", "pass"], str(log))()  # after a word: no such note
    assert log.read_text().count("left no exit status") == 1


@pytest.mark.parametrize("time", ["1", "3", "0:02:30"])
def test_a_time_too_short_to_start_and_checkpoint_is_refused(time: str) -> None:
    with pytest.raises(ReproError, match=r"too short to train.*give at least 4 minutes"):
        SlurmOptions(time=time, gpus_per_run=0).check()
    SlurmOptions(time="4", gpus_per_run=0).check()  # 4 minutes: USR2 60-120 s in


@pytest.mark.parametrize(
    ("said", "flags", "hint"),
    [
        ("Invalid generic resource (gres) specification", [], "--gpus-per-run 0"),
        ("invalid partition specified: nosuch", ["--gpus-per-run", "0"], "--partition"),
    ],
)
def test_an_sbatch_refusal_is_one_line_and_leaves_nothing_that_looks_submitted(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch, capsys, said: str, flags, hint: str
) -> None:
    fake_slurm(tmp_path, monkeypatch, sbatch=f"echo 'sbatch: error: {said}' >&2; exit 1", srun="")
    out = tmp_path / "run"
    argv = reproduce_args(synthetic_cifar, out, "--launcher", "slurm", "--time", "9", *flags)
    line = one_clear_line(*run_repro(capsys, *argv))
    assert f"sbatch refused the job array, nothing was submitted: sbatch: error: {said}" in line
    assert hint in line
    assert not (out / "summary.json").exists() and not (out / RECORD).exists()
    assert not (out / slurm.SUBMITIT_DIR).exists()  # no pickles of a submission that never was


# ------------------------------------------------------------------ one plan, two launchers (issue 25)


def test_one_plan_hands_both_launchers_the_same_commands_and_summary_fields(
    tmp_path: Path, synthetic_cifar: Path, monkeypatch
) -> None:
    out = (tmp_path / "run").resolve()
    models = ("resnet20", "plain20")
    plan = runner.plan_matrix(
        "core", models, get_preset("smoke"), out, 2, synthetic_cifar, device="cpu", amp="off"
    )
    assert plan.preset.train_flags[-2:] == ("--amp", "off")  # --amp applied once, in the plan
    submitted: list[list[str]] = []

    def fake_array(folder, options, params, trainings):
        submitted.extend(t.command for t in trainings)
        return [type("Job", (), {"job_id": f"9_{i}"})() for i in range(len(trainings))]

    monkeypatch.setattr(slurm, "submit_array", fake_array)
    options = SlurmOptions(time="9", gpus_per_run=0, cluster="local")
    assert len(slurm.submit_plan(plan, options, echo=lambda _: None)) == 4
    on_slurm = json.loads((out / "summary.json").read_text())
    started: list[list[str]] = []

    def fake_run_jobs(jobs, commands, parallel, echo, slots, note):
        started.extend(commands[(j.model, j.seed)] for j in jobs)
        return runner.Outcome(codes={(j.model, j.seed): 0 for j in jobs})

    monkeypatch.setattr(runner, "run_jobs", fake_run_jobs)
    assert runner.run_local(plan, runner.local_launch(), echo=lambda _: None) == 0
    local = json.loads((out / "summary.json").read_text())
    assert started == submitted and len(started) == 4
    assert all(cmd[-2:] == ["--amp", "off"] for cmd in started)
    fields = plan.summary_fields()
    assert {k: on_slurm[k] for k in fields} == {k: local[k] for k in fields} == fields
    assert (on_slurm["launcher"], on_slurm["status"], on_slurm["parallel"]) == (
        "slurm",
        "submitted",
        None,
    )
    assert (local["status"], local["parallel"], local["gpus"]) == ("finished", 1, None)
    assert "launcher" not in local and "gpus" not in on_slurm


# ------------------------------------------------------------------ the GPU default follows the partition (issue 24)

SINFO = "echo 'debug*|(null)'; echo 'gpu|gpu:a100:4'; echo 'gpu|(null)'"  # sinfo -h -o %P|%G


@pytest.mark.parametrize(
    ("partition", "offers"), [(None, False), ("debug", False), ("gpu", True), ("nosuch", None)]
)
def test_sinfo_tells_whether_a_partition_has_a_gpu(
    tmp_path: Path, monkeypatch, partition: str | None, offers: bool | None
) -> None:
    fake_slurm(tmp_path, monkeypatch, sinfo=SINFO)
    assert slurm.partition_offers_gpus(partition) is offers


def test_without_sinfo_each_run_asks_for_one_gpu_as_before(tmp_path: Path, monkeypatch) -> None:
    fake_slurm(tmp_path, monkeypatch, sbatch="exit 1")  # no sinfo on PATH
    assert slurm.default_gpus_per_run(None) == (1, None)
    assert slurm.default_gpus_per_run("gpu") == (1, None)


def test_the_gpu_request_follows_the_partition_unless_given(
    synthetic_cifar: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    fake_slurm(tmp_path, monkeypatch, sinfo=SINFO)
    dry = ("--launcher", "slurm", "--time", "9", "--slurm-dry-run")
    rc, text, err = run_repro(capsys, *reproduce_args(synthetic_cifar, tmp_path / "a", *dry))
    assert rc == 0, err
    assert "the default partition has no GPUs" in text and "--gpus-per-node" not in text
    gpu = reproduce_args(synthetic_cifar, tmp_path / "b", *dry, "--partition", "gpu")
    rc, text, err = run_repro(capsys, *gpu)
    assert rc == 0 and "#SBATCH --gpus-per-node=1" in text.splitlines() and "no GPUs" not in text
    asked = reproduce_args(synthetic_cifar, tmp_path / "c", *dry, "--gpus-per-run", "1")
    rc, text, err = run_repro(capsys, *asked)  # given: never overridden
    assert rc == 0 and "#SBATCH --gpus-per-node=1" in text.splitlines() and "no GPUs" not in text
