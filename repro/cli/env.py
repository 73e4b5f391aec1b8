"""Report the environment: versions, devices, whether torch.compile works, and where the data is.

Absent data or a failing torch.compile are reported, not errors: this is the first thing to run
on a new machine. The compile check takes tens of seconds on a small CPU, so it is opt-in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import TypedDict

import torch

from repro.cli.options import add_data_root, add_json
from repro.data import load_cifar10, resolve_data_root
from repro.environment import device_name, environment
from repro.errors import ReproError

COMPILE_TIMEOUT_S = 180.0
# Runs in a child process, so a hang or a crash in the compiler cannot take this command down.
_COMPILE_PROBE = """
import torch
f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
x = torch.linspace(-1, 1, 16)
assert torch.allclose(f(x), torch.sin(x) * 2 + 1)
print("ok")
"""


class CudaDevice(TypedDict):
    index: int
    name: str
    memory_gib: float
    capability: str  # "major.minor"


class _Status(TypedDict):
    status: str  # ok | failed | not checked


class CompileCheck(_Status, total=False):
    reason: str
    seconds: float


class _Where(TypedDict):
    root: str
    found: bool


class DataPresence(_Where, total=False):
    reason: str  # when not found
    folder: str
    official: bool
    counts: dict[str, int]  # train, test


class Devices(TypedDict):
    cuda: list[CudaDevice]
    cpu: str
    cpu_count: int | None
    torch_threads: int


class EnvReport(TypedDict):
    """`repro env`'s report (``--json`` prints it as is)."""

    versions: dict[str, str | int | None]
    devices: Devices
    compile: CompileCheck
    data: DataPresence
    platform: str
    hostname: str
    git_commit: str | None


def cuda_devices() -> list[CudaDevice]:
    """Name, memory (GiB) and compute capability of every visible CUDA device."""
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        memory = round(p.total_memory / 2**30, 1)
        out.append(
            CudaDevice(index=i, name=p.name, memory_gib=memory, capability=f"{p.major}.{p.minor}")
        )
    return out


def check_compile(timeout: float = COMPILE_TIMEOUT_S) -> CompileCheck:
    """Compile and run a tiny function on CPU in a child process: ``{"status", "seconds", ...}``."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _COMPILE_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {
            "status": "failed",
            "reason": f"timed out after {timeout:g} s",
            "seconds": round(time.perf_counter() - start, 1),
        }
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode == 0 and proc.stdout.strip().endswith("ok"):
        return {"status": "ok", "seconds": seconds}
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    reason = lines[-1][:300] if lines else f"exit status {proc.returncode}"
    return {"status": "failed", "reason": reason, "seconds": seconds}


def data_presence(root_arg: str | None) -> DataPresence:
    """Whether CIFAR-10 is at the data root (resolved like the data layer), and what it is."""
    root = resolve_data_root(root_arg)
    try:
        data = load_cifar10(root)
    except ReproError as exc:
        return DataPresence(root=str(root), found=False, reason=str(exc))
    return DataPresence(
        root=str(root),
        found=True,
        folder=str(data.root),
        official=data.official,
        counts={"train": data.num_train, "test": data.num_test},
    )


def cudnn_version() -> int | None:
    """The cuDNN this torch was built with (also without a GPU); None when it has none."""
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # a broken cuDNN install is reported as absent, not a crash
        return None


def collect(args: argparse.Namespace) -> EnvReport:
    env = environment()
    versions: dict[str, str | int | None] = {
        "python": env["python"],
        "torch": env["torch"],
        "torchvision": env["torchvision"],
        "numpy": env["numpy"],
        "cuda": env["cuda"],
        "cudnn": env["cudnn"] or cudnn_version(),
    }
    return {
        "versions": versions,
        "devices": {
            "cuda": cuda_devices(),
            "cpu": device_name("cpu"),
            "cpu_count": env["cpu_count"],
            "torch_threads": torch.get_num_threads(),
        },
        "compile": check_compile(args.compile_timeout)
        if args.check_compile
        else {"status": "not checked", "reason": "pass --check-compile"},
        "data": data_presence(args.data_root),
        "platform": env["platform"],
        "hostname": env["hostname"],
        "git_commit": env["git_commit"],
    }


def format_report(r: EnvReport) -> str:
    v, d, c, data = r["versions"], r["devices"], r["compile"], r["data"]
    lines = ["versions  " + ", ".join(f"{k} {'-' if val is None else val}" for k, val in v.items())]
    for dev in d["cuda"]:
        lines.append(
            f"cuda:{dev['index']}    {dev['name']}, {dev['memory_gib']} GiB, "
            f"capability {dev['capability']}"
        )
    if not d["cuda"]:
        lines.append("cuda      no CUDA device available")
    lines.append(f"cpu       {d['cpu']}, {d['cpu_count']} cores, torch uses {d['torch_threads']}")
    compile_line = f"compile   {c['status']}"
    if "seconds" in c:
        compile_line += f" ({c['seconds']} s)"
    if c.get("reason"):
        compile_line += f": {c['reason']}"
    lines.append(compile_line)
    if data["found"]:
        kind = "official CIFAR-10" if data["official"] else "SUBSET of CIFAR-10"
        counts = data["counts"]
        lines.append(
            f"data      {data['folder']}: {kind}, {counts['train']} train / {counts['test']} test"
        )
    else:
        lines.append(f"data      not found at {data['root']}: {data['reason']}")
    lines.append(f"platform  {r['platform']}, host {r['hostname']}, git {r['git_commit'] or '-'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_root(parser)
    parser.add_argument(
        "--check-compile",
        action="store_true",
        help="also check that torch.compile works (tens of seconds on a small CPU)",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=COMPILE_TIMEOUT_S,
        metavar="S",
        help=f"give up on the compile check after S seconds (default: {COMPILE_TIMEOUT_S:g})",
    )
    add_json(parser, "print the report as JSON")


def run(args: argparse.Namespace) -> int:
    if args.compile_timeout <= 0:
        raise ReproError(f"--compile-timeout must be > 0, got {args.compile_timeout}")
    report = collect(args)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
