"""Where a result came from: command, config hash, git commit, package versions, hardware."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("prior-harness", "torch", "torchvision", "numpy", "scikit-learn", "pluggy", "pydantic", "torch-fidelity")


def git_commit(cwd: Path) -> str:
    """HEAD of the checkout at ``cwd``, marked when the code (not the results folders) has uncommitted changes."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # Results folders change during a run; only changes to the code make a result hard to reproduce.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards"],
            cwd=cwd, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return f"{out}{' (with uncommitted changes)' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} torch threads"


def collect(config_path: Path, device: torch.device, argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "command": "harness " + shlex.join(sys.argv[1:] if argv is None else argv),
        "config": str(config_path),
        "config_sha256": hashlib.sha256(config_path.read_bytes()).hexdigest()[:16],
        "git_commit": git_commit(Path.cwd()),
        "versions": _versions(),
        "device": describe_device(device),
        "platform": platform.platform(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
