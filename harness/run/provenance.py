"""Where a result came from: command, config hash, the harness's version and commit, plugins, versions, hardware."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as metadata
import json
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

import harness
from harness.paths import write_json_atomic
from harness.registry import Registry, load_registry

DISTRIBUTION = "prior-harness"
PACKAGES = (DISTRIBUTION, "torch", "torchvision", "numpy", "scikit-learn", "pluggy", "pydantic", "torch-fidelity")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)


def _checkout(cwd: Path) -> tuple[str, bool] | None:
    """(HEAD, dirty) of the git work tree at ``cwd``; dirty means the code (not the results folders) changed."""
    try:
        head = _git(cwd, "rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        # Results folders change during a run; only changes to the code make a result hard to reproduce.
        status = _git(cwd, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards")
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip(), bool(status.stdout.strip())


def git_commit(cwd: Path | None = None) -> str:
    """The commit of the harness code this process runs (no ``cwd``: see ``harness_source``), or HEAD of the checkout
    at ``cwd``; marked when the code (not the results folders) has uncommitted changes."""
    if cwd is None:
        return harness_source().commit_text()
    found = _checkout(cwd)
    if found is None:
        return "unknown"
    return f"{found[0]}{' (with uncommitted changes)' if found[1] else ''}"


@dataclass(frozen=True)
class HarnessSource:
    """Which harness code ran: its version, where it was imported from and the commit that code is at.

    ``commit_from`` says how the commit is known: ``git`` (the package sits in a git work tree: the clone itself or
    an editable install of it), ``direct_url.json`` (pip recorded the commit it installed from, PEP 610), or
    ``unknown`` (a wheel or sdist install records none).
    """

    version: str
    location: str
    commit: str | None
    dirty: bool | None
    commit_from: Literal["git", "direct_url.json", "unknown"]
    install_url: str | None = None

    def commit_text(self) -> str:
        """``sha``, ``sha (with uncommitted changes)`` or ``unknown``: the form result.json and the leaderboard show."""
        if self.commit is None:
            return "unknown"
        return f"{self.commit}{' (with uncommitted changes)' if self.dirty else ''}"


def _package_commit(package_dir: Path) -> tuple[str, bool] | None:
    """(HEAD, dirty) of the git work tree the package's own files are tracked in, else None.

    Tracked, not merely inside: a site-packages folder under some other repository must not borrow its commit.
    """
    try:
        if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None
        top = _git(package_dir, "rev-parse", "--show-toplevel").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return _checkout(Path(top))


def _direct_url() -> dict[str, Any]:
    """pip's record of where the distribution was installed from (PEP 610), empty when there is none."""
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        data = json.loads(text) if text else {}
    except (metadata.PackageNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.cache
def harness_source() -> HarnessSource:
    """The harness code this process imported, whatever folder it runs in.

    Cached: the code a process runs is the code it imported at start, even if the files change meanwhile.
    """
    package_dir = Path(harness.__file__).resolve().parent
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = harness.__version__
    url = _direct_url()
    install_url = str(url["url"]) if "url" in url else None
    found = _package_commit(package_dir)
    if found is not None:
        return HarnessSource(version, str(package_dir), found[0], found[1], "git", install_url)
    vcs = url.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id"):
        return HarnessSource(version, str(package_dir), str(vcs["commit_id"]), None, "direct_url.json", install_url)
    return HarnessSource(version, str(package_dir), None, None, "unknown", install_url)


def plugins_used(registry: Registry) -> list[dict[str, str]]:
    """Every registered plugin with the distribution and version that provided it (as ``harness list --json``)."""
    return [
        {"kind": p.kind, "name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module}
        for p in registry
    ]


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


def collect(
    config_path: Path, device: torch.device, argv: list[str] | None = None, registry: Registry | None = None
) -> dict[str, Any]:
    """provenance.json: the command, the config's hash, the harness code and every plugin that was loaded.

    Without ``registry`` the plugins are loaded here (the same entry points the command loaded).
    """
    source = harness_source()
    registry = load_registry() if registry is None else registry
    return {
        "command": "harness " + shlex.join(sys.argv[1:] if argv is None else argv),
        "config": str(config_path),
        "config_sha256": hashlib.sha256(config_path.read_bytes()).hexdigest()[:16],
        # The harness's own commit, not the working directory's: a run from any folder records the code it ran.
        "git_commit": source.commit_text(),
        "harness": asdict(source),
        "plugins": plugins_used(registry),
        "broken_plugins": [asdict(b) for b in registry.broken],
        "versions": _versions(),
        "device": describe_device(device),
        "platform": platform.platform(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write(
    path: Path, config_path: Path, device: torch.device, registry: Registry, **sections: dict[str, Any]
) -> None:
    """Write ``collect``'s record plus what the command adds (``descriptions``, ``benchmarks``, ``study``, …) to
    ``path`` atomically: ``harness run`` and ``harness search`` record their runs the same way."""
    write_json_atomic(path, {**collect(config_path, device, registry=registry), **sections})
