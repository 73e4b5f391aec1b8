"""Stage 1: the environment (``repro env --check-compile --json``, the driver from nvidia-smi)
and the ``gpu``-marked tests (``pytest -m gpu``, JUnit XML), slowest file last, so that a time
box cuts the compiling tests rather than the quick ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from scripts.gpu_check.common import (
    JUNIT,
    PYTEST_PLUGIN,
    Context,
    pytest_env,
    run_child,
    update_stage,
)

LAST = "tests/test_fast_path.py"  # compiles in every mode: minutes on a cold cache
# max-autotune compiles for minutes: stage 2 tries that mode under its own time box
DESELECT = "not max-autotune"


def nvidia_smi() -> dict[str, Any]:
    """GPU name, driver and memory as nvidia-smi reports them (absent: said so)."""
    if shutil.which("nvidia-smi") is None:
        return {"status": "nvidia-smi not found"}
    query = "name,driver_version,memory.total,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"status": f"nvidia-smi failed: {exc}"}
    gpus = [
        dict(zip(query.split(","), (v.strip() for v in line.split(","))))
        for line in out.splitlines()
        if line.strip()
    ]
    return {"status": "ok", "gpus": gpus}


def repro_env(ctx: Context, seconds: float) -> dict[str, Any]:
    """``python -m repro env --check-compile --json`` as a child process (at most ``seconds``)."""
    cmd = [sys.executable, "-m", "repro", "env", "--check-compile", "--json"]
    cmd += ["--compile-timeout", str(ctx.sizes.compile_probe_s)]
    if ctx.data_root:
        cmd += ["--data-root", ctx.data_root]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {seconds:.0f} s"}
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"exit status {proc.returncode}: {last}"}
    return {"status": "ok", **json.loads(proc.stdout)}


def junit_counts(path: Path) -> dict[str, Any]:
    """Totals and the failing tests (name and first message line) of a JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    problems = []
    for case in root.iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            message = (bad.get("message") or "").strip().splitlines()
            problems.append(f"{case.get('name')}: {message[0][:200] if message else bad.tag}")
    totals["passed"] = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    return {**totals, "problems": problems}


def pytest_command(ctx: Context) -> list[str]:
    files = sorted(str(p) for p in Path("tests").glob("test_*.py") if str(p) != LAST)
    options = ["-m", "gpu", "-k", DESELECT, "-q", *PYTEST_PLUGIN]
    return [sys.executable, "-m", "pytest", *files, LAST, *options, f"--junitxml={ctx.out / JUNIT}"]


def stage_env(ctx: Context) -> None:
    """nvidia-smi, `repro env` (55% of the time left at most), then `pytest -m gpu`; the stage
    fails when either of the last two did, after both have run."""
    update_stage(ctx.out, "env", nvidia_smi=nvidia_smi())
    report = repro_env(ctx, ctx.remaining() * 0.55)  # 24 s on 2 quiet CPU cores
    update_stage(ctx.out, "env", repro_env=report)
    rc = run_child(pytest_command(ctx), ctx.remaining(), pytest_env(ctx))
    junit = ctx.out / JUNIT
    # exit 2: the time-box plugin stopped it between tests; None: stopped by SIGINT inside one
    record: dict[str, Any] = {"exit": rc, "deselected": DESELECT, "time_boxed": rc in (None, 2)}
    if junit.is_file():
        record.update(junit_counts(junit))
    update_stage(ctx.out, "env", pytest=record)
    problems = [] if report["status"] == "ok" else [f"repro env: {report['status']}"]
    if record["time_boxed"]:
        problems.append(f"pytest -m gpu: cut by the time box after {record.get('tests', 0)} tests")
    elif rc not in (0, 5):  # 5: nothing collected
        problems.append(f"pytest -m gpu exited {rc}: {record.get('problems', [])[:3]}")
    if problems:
        raise RuntimeError("; ".join(problems))
