"""`repro env`: versions, devices, optional torch.compile check, data presence."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from repro.cli import main
from repro.cli.env import check_compile


def env_report(capsys, *argv: str) -> dict:
    rc = main(["env", "--json", *argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def test_versions_and_devices_are_those_of_this_interpreter(tmp_path, capsys):
    report = env_report(capsys, "--data-root", str(tmp_path))
    v = report["versions"]
    assert v["python"] == sys.version.split()[0]
    assert v["torch"] == torch.__version__
    assert v["numpy"] == np.__version__
    assert v["cuda"] == torch.version.cuda
    assert report["devices"]["cpu_count"] == os.cpu_count()
    assert len(report["devices"]["cuda"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert report["compile"]["status"] == "not checked"


def test_synthetic_data_is_found_and_reported_as_a_subset(synthetic_cifar, capsys):
    data = env_report(capsys, "--data-root", str(synthetic_cifar))["data"]
    assert data["found"] is True
    assert data["official"] is False
    assert data["counts"] == {"train": 100, "test": 20}


def test_data_root_falls_back_to_the_environment_variable(synthetic_cifar, capsys, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(synthetic_cifar))
    data = env_report(capsys)["data"]
    assert data["root"] == str(synthetic_cifar)
    assert data["found"] is True


def test_absent_data_is_reported_not_an_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    data = env_report(capsys, "--data-root", str(missing))["data"]
    assert data["found"] is False
    assert "does not exist" in data["reason"]
    rc = main(["env", "--data-root", str(missing)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "not found" in out and "torch" in out and "compile" in out


def test_mini_subset_counts_are_reported(mini_root, capsys):
    data = env_report(capsys, "--data-root", str(mini_root))["data"]
    assert data["found"] and not data["official"]
    assert data["counts"] == {"train": 5085, "test": 1017}


def test_compile_check_reports_a_timeout_as_failed_with_the_reason():
    result = check_compile(timeout=0.05)
    assert result["status"] == "failed"
    assert "timed out" in result["reason"]


def test_bad_compile_timeout_is_one_clear_line(capsys):
    rc = main(["env", "--check-compile", "--compile-timeout", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--compile-timeout" in err


@pytest.mark.slow
def test_compile_check_succeeds_where_a_c_compiler_is_present():
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
        pytest.skip("no C compiler: torch.compile's CPU backend cannot work here")
    result = check_compile()
    assert result == {"status": "ok", "seconds": result["seconds"]}
