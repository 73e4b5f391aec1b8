"""The environment record stored with every run: versions, device, git commit, host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """HEAD's commit hash, with ``-dirty`` when tracked files differ; None outside a git repo."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str | torch.device | None = None) -> str:
    """A human name for ``device`` (GPU model, or the CPU's processor string)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU ({name})"


class Environment(TypedDict):
    """Where a number came from (config.json's and summary.json's ``environment``)."""

    python: str
    torch: str
    torchvision: str | None
    numpy: str
    cuda: str | None
    cuda_available: bool
    cudnn: int | None
    device: str
    device_name: str
    gpu_count: int
    cpu_count: int | None
    torch_threads: int
    platform: str
    hostname: str
    git_commit: str | None


def environment(device: str | torch.device | None = None) -> Environment:
    """Versions, device name, git commit and host: enough to tell where a number came from."""
    try:
        import torchvision

        tv_version: str | None = torchvision.__version__
    except Exception:  # torchvision missing or broken: record it, do not fail a run
        tv_version = None
    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),  # not TorchVersion: checkpoints hold plain types
        "torchvision": tv_version,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": str(device) if device is not None else ("cuda" if cuda else "cpu"),
        "device_name": device_name(device if device is not None else ("cuda" if cuda else "cpu")),
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_commit": git_commit(),
    }
