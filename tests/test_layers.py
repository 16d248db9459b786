"""The core's layers (pyproject's [tool.importlinter]) hold, and the contract fails when an import points upwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports reads the contract from pyproject.toml in cwd and finds the package through PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_core_keeps_its_layers() -> None:
    run = _lint_imports(ROOT, ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout


def test_an_import_from_a_low_layer_to_a_high_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "harness", tmp_path / "harness")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "harness" / "api.py").open("a") as api:
        api.write("\nimport harness.cli  # the plugin API reaching up into the command line\n")
    run = _lint_imports(tmp_path, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "harness.api -> harness.cli" in run.stdout
