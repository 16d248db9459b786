"""Plugins arrive through the ``harness`` entry-point group: a third-party package, a broken one, a clash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_distribution, write_config
from harness.registry import PluginConflict, load_registry

LAPLACE = '''
import torch
from harness import Prior, hookimpl


class LaplacePrior(Prior):
    name = "laplace-test"

    def __init__(self, latent_dim: int, scale: float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.scale = scale

    def log_prob(self, z, cond=None):
        return (-z.abs() / self.scale - torch.log(torch.tensor(2 * self.scale))).sum(-1)

    def sample(self, n, cond=None):
        return torch.distributions.Laplace(0.0, self.scale).sample((n, self.latent_dim)).to(self.device)


@hookimpl
def harness_register_priors(register):
    register(LaplacePrior)
'''


def _harness(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_third_party_plugin_package_is_listed_and_trains(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-laplace-test", "laplace_test_plugin", LAPLACE)

    listed = _harness(site, "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["plugins"]
    assert {"kind": "prior", "name": "laplace-test", "distribution": "harness-prior-laplace-test",
            "version": "0.3", "module": "laplace_test_plugin"} in rows

    cfg = write_config(tmp_path / "b.yaml", priors={"laplace-test": {"scale": 2.0}}, regularizers=["kl"])
    run = _harness(site, "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (result,) = (tmp_path / "out" / "cells").glob("*/result.json")
    data = json.loads(result.read_text())
    assert data["status"] == "done" and data["cell"]["prior_options"] == {"scale": 2.0}


def test_a_broken_plugin_is_listed_with_its_error_and_the_rest_still_works(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-broken-test", "broken_test_plugin", "raise ImportError('needs libfoo 9')\n")
    listed = _harness(site, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "broken_test_plugin" in listed.stdout and "harness-broken-test" in listed.stdout
    assert "ImportError: needs libfoo 9" in listed.stdout
    assert "gaussian" in listed.stdout and "reconstruction" in listed.stdout

    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"])
    run = _harness(site, "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "warning: plugin broken_test_plugin" in run.stderr


def test_two_plugins_registering_one_name_is_an_error_naming_both_distributions(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    clash = LAPLACE.replace('name = "laplace-test"', 'name = "gaussian"')
    make_distribution(site, "harness-prior-clash", "clash_test_plugin", clash)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginConflict, match=r"prior 'gaussian' is registered by two plugins: .*harness-prior-clash"):
        load_registry()
    listed = _harness(site, "list", cwd=tmp_path)
    assert listed.returncode == 2
    assert listed.stderr.startswith("error: plugins: prior 'gaussian' is registered by two plugins: ")
    assert "prior-harness" in listed.stderr and "harness-prior-clash" in listed.stderr


def test_every_builtin_is_registered_through_the_entry_point_group(registry):
    names = {(p.kind, p.name): p.distribution for p in registry}
    for key in [("prior", "gaussian"), ("regularizer", "kl"), ("regularizer", "none"), ("evaluator", "reconstruction"),
                ("architecture", "mlp"), ("architecture", "conv"), ("dataset", "digits"), ("dataset", "mnist"),
                ("dataset", "fashion-mnist"), ("dataset", "cifar10"), ("dataset", "celeba"), ("dataset", "moons"),
                ("dataset", "eight-gaussians"), ("dataset", "rings")]:
        assert names.get(key) == "prior-harness", key
    assert registry.broken == []
