"""Provenance names the harness code that ran (version, commit, how the commit is known) and every plugin's
distribution and version, whatever folder `harness run` is started in."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from conftest import make_distribution, write_config
from test_plugins import LAPLACE

#: The clone this test runs from: the harness package's parent folder.
CLONE = Path(harness.__file__).resolve().parent.parent


def _git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _python(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_run_from_another_repository_records_the_harness_commit_and_each_plugin_s_distribution(tmp_path):
    head = _git(CLONE, "rev-parse", "HEAD")
    # The user's own project, a git repository of its own: its commit is not the harness's.
    elsewhere = tmp_path / "my-project"
    elsewhere.mkdir()
    _git(elsewhere, "init", "-q")
    _git(elsewhere, "commit", "-q", "--allow-empty", "-m", "theirs")
    assert _git(elsewhere, "rev-parse", "HEAD") != head
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-laplace-test", "laplace_test_plugin", LAPLACE)
    cfg = write_config(elsewhere / "b.yaml", priors={"laplace-test": {}}, regularizers=["none"], sample_grid=0)

    run = _python("-m", "harness", "run", str(cfg), "--out", "out", "--quiet", "--device", "cpu",
                  site=site, cwd=elsewhere)

    assert run.returncode == 0, run.stderr
    prov = json.loads((elsewhere / "out" / "provenance.json").read_text())
    assert prov["git_commit"].split(" ")[0] == head
    assert prov["harness"]["commit"] == head and prov["harness"]["commit_from"] == "git"
    assert prov["harness"]["version"] == metadata.version("prior-harness")
    assert prov["harness"]["location"] == str(CLONE / "harness")
    (result,) = (elsewhere / "out" / "cells").glob("*/result.json")
    assert json.loads(result.read_text())["git_commit"] == prov["git_commit"]
    plugins = {(p["kind"], p["name"]): (p["distribution"], p["version"]) for p in prov["plugins"]}
    assert plugins[("prior", "laplace-test")] == ("harness-prior-laplace-test", "0.3")
    assert plugins[("prior", "gaussian")] == ("prior-harness", metadata.version("prior-harness"))


SOURCE = (
    "import json, dataclasses; from harness.run.provenance import harness_source; "
    "print(json.dumps(dataclasses.asdict(harness_source())))"
)


@pytest.mark.parametrize(("direct_url", "commit", "commit_from"), [
    ({"url": "https://example.org/prior-harness.git",
      "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567"}},
     "0123456789abcdef0123456789abcdef01234567", "direct_url.json"),
    ({"url": "file:///somewhere/prior_harness-0.1.0.tar.gz", "archive_info": {}}, None, "unknown"),
    (None, None, "unknown"),
])
def test_an_installed_copy_outside_git_takes_its_commit_from_pip_s_direct_url_json(
    tmp_path, direct_url, commit, commit_from
):
    # A non-editable install: the package's files are a copy in site-packages, in no git work tree.
    site = tmp_path / "site"
    shutil.copytree(CLONE / "harness", site / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    info = site / "prior_harness-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prior-harness\nVersion: 0.1.0\n", encoding="utf-8")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url), encoding="utf-8")

    found = _python("-c", SOURCE, site=site, cwd=tmp_path)

    assert found.returncode == 0, found.stderr
    source = json.loads(found.stdout)
    assert source["location"] == str(site / "harness")
    assert (source["commit"], source["commit_from"]) == (commit, commit_from)
    assert source["install_url"] == (direct_url or {}).get("url")
