"""`repro report` of imports (issue 23 item 7): a single imported run and a folder of runs are
reportable; titles and headers state only what the import knows; partial imports are worded by
what they really lack; best-on-test never counts iteration 0."""

from __future__ import annotations

import json
from pathlib import Path

from test_import_caffe import CAFFE
from test_import_run import ERRORS, epochs

from repro.claims import (
    NOT_ASSESSABLE,
    PASS,
    SKIP,
    all_verdicts,
    load_run_folder,
    model_seeds,
    seeds_per_net,
)
from repro.cli import main
from repro.fileio import write_jsonl
from repro.matrix_summary import seed_metrics
from repro.run_config import parse_run_config, write_run_config
from repro.store import METRICS, load_matrix, load_run

STATED = [
    "--set", "iterations=64000", "--total-iterations", "64000", "--finished",
    "--set", "data_official=true", "--set", "recipe=paper", "--set", "milestones=[32000,48000]",
    "--set", "batch_size=128", "--set", "lr=0.1",
]  # fmt: skip
# What an import cannot know, and a title that would contradict "Not the paper's numbers".
NEVER_FOR_AN_IMPORT = (
    "SUBSET",
    "FORCED",
    "seed projects' recipe",
    "BN over 64",
    "Reproduction of He et al.",
    "schedule ends at None",
    "final.pt",
)


def caffe_run(tmp_path: Path, name: str, *extra: str, log: str = CAFFE, model="resnet56") -> Path:
    src, out = tmp_path / f"{name}.log", tmp_path / name
    src.write_text(log)
    assert main(["import-run", str(src), "--out", str(out), "--model", model, *extra]) == 0
    return out


def report(tmp_path: Path, run: Path, capsys) -> tuple[int, str]:
    rc = main(["report", str(run), "--out", str(tmp_path / f"report-{run.name}")])
    capsys.readouterr()
    return rc, (tmp_path / f"report-{run.name}" / "report.md").read_text()


def test_a_single_unfinished_import_reports_what_it_lacks_and_nothing_it_cannot_know(
    tmp_path, capsys
):
    rc, text = report(tmp_path, caffe_run(tmp_path, "bare"), capsys)
    assert rc == 1  # completeness fails: no schedule end, not said finished
    head = "\n".join(text.splitlines()[:6])
    assert "IMPORTED runs (run folder: resnet56)" in head
    assert "data: unknown, recipe: unknown" in head
    assert "complete: no (completeness FAIL)" in head
    for words in NEVER_FOR_AN_IMPORT:
        assert words not in text, words
    row = next(line for line in text.splitlines() if line.startswith("| resnet56 | 0 |"))
    assert "--total-iterations" in row and "--finished" in row  # what is really missing
    assert "| resnet56 | 6.97 | 6.97 | - | 6.97 |" in text  # final and best-on-test
    assert "- official CIFAR-10: unknown" in text


def test_a_single_stated_import_is_judged_on_what_one_net_allows(tmp_path, capsys):
    rc, text = report(tmp_path, caffe_run(tmp_path, "stated", *STATED), capsys)
    assert rc == 3  # tolerance passes; the orderings need other nets
    assert "data: official CIFAR-10, recipe: stated" in text
    assert "preset `paper`" in text and "complete: yes" in text
    verdicts = {v.name: v for v in all_verdicts(load_run_folder(tmp_path / "stated"))}
    assert verdicts["completeness"].status == PASS and verdicts["tolerance"].status == PASS
    assert verdicts["degradation"].status == NOT_ASSESSABLE
    assert "plain20, plain56 missing" in verdicts["degradation"].reason
    assert "plain56 missing" in verdicts["residual"].reason


def test_a_single_import_far_from_the_paper_fails_tolerance(tmp_path, capsys):
    worse = CAFFE.replace("accuracy = 0.9303", "accuracy = 0.8500")  # doctored: 15 % error
    rc, text = report(tmp_path, caffe_run(tmp_path, "worse", *STATED, log=worse), capsys)
    assert rc == 1 and "### tolerance: FAIL" in text


def test_a_folder_of_runs_reports_and_two_runs_of_one_net_are_refused(tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    caffe_run(folder, "r56", *STATED)
    caffe_run(folder, "r20", *STATED, model="resnet20")
    rc, text = report(tmp_path, folder, capsys)
    assert rc in (1, 3) and "| resnet56 |" in text and "| resnet20 |" in text
    assert "run folder: resnet20, resnet56" in text
    caffe_run(folder, "again", *STATED)  # a second resnet56 seed 0
    assert main(["report", str(folder), "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert "two runs of resnet56 seed 0" in err and len(err.strip().splitlines()) == 1


def partial_matrix(tmp_path: Path, *extra: str) -> Path:
    """An `import-run --experiment core` of plain20 and resnet20 only."""
    src, out = tmp_path / "logs", tmp_path / "matrix"
    for model in ("plain20", "resnet20"):
        folder = src / model / "seed0"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(epochs(*ERRORS[model])))
    argv = ["import-run", str(src), "--out", str(out), "--experiment", "core"]
    assert main([*argv, "--iterations-per-epoch", "391", "--map", "train_acc=acc", *extra]) == 0
    return out


def test_a_partial_matrix_names_the_missing_56_layer_nets(tmp_path, capsys):
    verdicts = {v.name: v for v in all_verdicts(load_matrix(partial_matrix(tmp_path)))}
    degradation, residual = verdicts["degradation"], verdicts["residual"]
    assert degradation.status == NOT_ASSESSABLE and residual.status == NOT_ASSESSABLE
    assert "plain56 missing" in degradation.reason
    assert "plain56, resnet56 missing" in residual.reason
    assert "none of the models" not in degradation.reason + residual.reason
    rows = {r[0]: r[-1] for r in verdicts["completeness"].rows}
    assert "--total-iterations" in rows["plain20"] and "--finished" in rows["plain20"]
    assert "None" not in rows["plain20"] and "final.pt" not in rows["plain20"]


def test_an_experiment_without_the_compared_nets_still_skips(tmp_path):
    src, out = tmp_path / "logs", tmp_path / "t6"
    (src / "resnet20" / "seed0").mkdir(parents=True)
    (src / "resnet20" / "seed0" / "metrics.json").write_text(json.dumps(epochs(8.5, 5.0)))
    argv = ["import-run", str(src), "--out", str(out), "--experiment", "table6"]
    assert main([*argv, "--iterations-per-epoch", "391", "--map", "train_acc=acc"]) == 0
    degradation = all_verdicts(load_matrix(out))[1]
    assert degradation.status == SKIP and "none of the models" in degradation.reason


def test_complete_is_shown_only_when_completeness_passes(tmp_path, capsys):
    matrix = partial_matrix(tmp_path, "--finished")  # every run finished, two nets missing
    assert json.loads((matrix / "summary.json").read_text())["complete"] is True
    rc, text = report(tmp_path, matrix, capsys)
    assert rc == 1 and "complete: no (completeness FAIL)" in text and "complete: True" not in text


def test_best_on_test_never_counts_iteration_0(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    config = {"model": "resnet56", "seed": 0, "total_iterations": 64000}
    write_run_config(folder, parse_run_config(config))
    rows = [
        {"iteration": 0, "test_error": 0.1, "train_error": 90.0},  # the untrained net, misread
        {"iteration": 32000, "test_error": 8.0, "train_error": 3.0},
        {"iteration": 64000, "test_error": 7.0, "train_error": 1.0},
    ]
    write_jsonl(folder / METRICS, rows)
    metrics = seed_metrics(load_run(folder))
    assert metrics["best_test_error"] == 7.0 and metrics["final_test_error"] == 7.0


def seeded_folder(tmp_path: Path, seeds: dict[str, list[int]], errors=ERRORS) -> Path:
    """A folder of imported runs (`import-run --model M --seed K`), each net with its seeds."""
    folder = tmp_path / "runs"
    tmp_path.mkdir(exist_ok=True)
    for model, model_seeds_ in seeds.items():
        for seed in model_seeds_:
            src = tmp_path / f"{model}-{seed}.json"
            src.write_text(json.dumps(epochs(*errors[model])))
            argv = ["--model", model, "--seed", str(seed), "--iterations-per-epoch", "391", "--map"]
            argv.append("train_acc=acc")
            out = folder / f"{model}-seed{seed}"
            assert main(["import-run", str(src), "--out", str(out), *argv, "--finished"]) == 0
    return folder


def ordering_rows(folder: Path) -> dict[tuple[str, str], tuple]:
    verdicts = {v.name: v for v in all_verdicts(load_run_folder(folder))}
    rows = verdicts["degradation"].rows + verdicts["residual"].rows
    return {(r[0], r[1]): r[2:] for r in rows}


def test_a_folder_of_runs_with_different_seeds_per_net_is_still_compared(tmp_path, capsys):
    """Imported runs of plain20 seed 0, plain56 seed 1, resnet20 seed 2, resnet56 seed 3 are
    compared as if their seeds were equal (another code base's seeds are labels), not failed as
    'missing' seeds 0/4."""
    nets = ("plain20", "plain56", "resnet20", "resnet56")
    same = ordering_rows(seeded_folder(tmp_path / "same", {m: [0] for m in nets}))
    differ = ordering_rows(seeded_folder(tmp_path / "differ", {m: [i] for i, m in enumerate(nets)}))
    assert differ == same
    assert differ[("plain56 > plain20", "final_test_error")] == (13.5, 9.5, "1/1", "ok")
    assert differ[("resnet20 > resnet56", "final_test_error")][2:] == ("1/1", "ok")


def test_different_seeds_per_net_can_still_fail_and_count_the_fewest_runs(tmp_path, capsys):
    swapped = {**ERRORS, "plain20": ERRORS["plain56"], "plain56": ERRORS["plain20"]}
    seeds = {"plain20": [3, 4], "plain56": [7, 9], "resnet20": [0], "resnet56": [1]}
    folder = seeded_folder(tmp_path, seeds, swapped)
    rows = ordering_rows(folder)
    assert rows[("plain56 > plain20", "final_test_error")] == (9.5, 13.5, "0/2", "FAIL")
    matrix = load_run_folder(folder)
    assert model_seeds(matrix, "plain56") == [7, 9] and seeds_per_net(matrix) == 1
