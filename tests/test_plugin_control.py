"""Plugin control: ``harness list --verbose`` says where each plugin module came from and which hooks it implements;
``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-ins only."""

from __future__ import annotations

import json
import sys

from conftest import make_distribution
from harness.cli import main
from harness.registry import load_registry

PRIOR = """
import torch
from harness import Prior, hookimpl


class CtlPrior(Prior):
    name = "ctl"

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n, cond=None):
        return torch.zeros(n, self.latent_dim)


@hookimpl
def harness_register_priors(register):
    register(CtlPrior)


@hookimpl
def harness_register_prirs(register):  # a typo: no such hook
    pass
"""


def _installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-ctl", "ctl_plugin", PRIOR)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ctl_plugin", raising=False)  # another test's copy
    return site


def test_list_verbose_shows_each_modules_file_distribution_and_hooks(tmp_path, monkeypatch, capsys):
    site = _installed(tmp_path, monkeypatch)
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "ctl_plugin = ctl_plugin (harness-prior-ctl 0.3)" in out
    assert f"file:  {site / 'ctl_plugin.py'}" in out
    assert "hooks: harness_register_priors, harness_register_prirs (no such hook)" in out
    assert "gaussian = harness_plugins.priors.gaussian (prior-harness 0.1.0)" in out
    assert "hooks: harness_register_datasets" in out


def test_list_verbose_json_adds_the_modules(tmp_path, monkeypatch, capsys):
    site = _installed(tmp_path, monkeypatch)
    assert main(["list", "--json", "--verbose"]) == 0
    modules = {m["module"]: m for m in json.loads(capsys.readouterr().out)["modules"]}
    assert modules["ctl_plugin"] == {
        "entry_point": "ctl_plugin = ctl_plugin", "distribution": "harness-prior-ctl", "version": "0.3",
        "module": "ctl_plugin", "path": str(site / "ctl_plugin.py"),
        "hooks": ["harness_register_priors", "harness_register_prirs (no such hook)"],
    }  # fmt: skip


def test_disabling_autoload_keeps_the_builtins_only(tmp_path, monkeypatch, capsys):
    _installed(tmp_path, monkeypatch)
    assert "ctl" in load_registry().names("prior")
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = load_registry()
    assert registry.names("prior") == [
        "diffusion", "diffusion-ex-post", "gan", "gaussian", "gmm", "realnvp", "realnvp-ex-post", "two-stage", "vamp",
        "zuko", "zuko-ex-post",
    ]  # fmt: skip
    assert {m.distribution for m in registry.modules} == {"prior-harness"}
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert "ctl" not in captured.out and "gaussian" in captured.out
    assert "HARNESS_DISABLE_PLUGIN_AUTOLOAD is set: only the built-in plugins are loaded" in captured.err
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert "ctl" in load_registry().names("prior")
