"""A third-party plugin that misbehaves is that plugin's failure: the host lists it as broken, names it and its
distribution, and goes on. Each plugin here is a real installed distribution loaded through its entry point.

- ``sys.exit()``, ``KeyboardInterrupt`` or any other BaseException raised by a module's own import code;
- a hook that registers classes and then raises: none of that module's classes stay registered;
- a real Ctrl-C (SIGINT) while plugins load still stops the host, even when the plugin swallows it.

Built-in plugins' options out of range are bad input too: exit 2 and one line naming the option and its range.
"""

from __future__ import annotations

import inspect
import math
import sys
import typing
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field
from test_config_errors import one_error

from conftest import make_distribution, write_config
from harness.api import checked_options
from harness.cli import main
from harness.registry import Kind, Registry, load_registry
from harness_plugins.datasets.digits import Digits

PRIOR_CLASS = """
import torch
from harness import Prior, hookimpl


class {cls}(Prior):
    name = "{name}"

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n, cond=None):
        return torch.zeros(n, self.latent_dim)
"""


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> str:
    """Install ``source`` as module ``module`` of distribution ``harness-<module>``; returns the distribution."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    dist = f"harness-{module.replace('_', '-')}"
    make_distribution(site, dist, module, source)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return dist


IMPORT_FAILURES = {
    "exit_at_import": ("import sys\nsys.exit(3)\n", "SystemExit: the plugin called sys.exit(3)"),
    "bare_exit_at_import": ("raise SystemExit\n", "SystemExit: the plugin called sys.exit(None)"),
    "interrupt_at_import": ("raise KeyboardInterrupt('from the module')\n", "KeyboardInterrupt: from the module"),
    "base_exception_at_import": (
        "class Odd(BaseException):\n    pass\n\nraise Odd('not an Exception')\n",
        "Odd: not an Exception",
    ),
}


@pytest.mark.parametrize("module", list(IMPORT_FAILURES))
def test_plugin_raising_a_base_exception_at_import_is_listed_broken_and_the_host_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], module: str
) -> None:
    source, error = IMPORT_FAILURES[module]
    dist = _install(tmp_path, monkeypatch, module, source)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"{module} = {module} ({dist} 0.3): {error}" in out
    assert "gaussian" in out and "reconstruction" in out

    assert main(["validate", str(write_config(tmp_path / "bench.yaml"))]) == 0
    err = capsys.readouterr().err
    assert f"warning: plugin {module} = {module} ({dist}) failed to load: {error}" in err


HALF_REGISTERED = (
    PRIOR_CLASS.format(cls="HalfPrior", name="half")
    + """

@hookimpl
def harness_register_priors(register):
    register(HalfPrior)
    raise RuntimeError("the second class needs libbar")
"""
)

REGISTERED_THEN_OTHER_HOOK_RAISES = (
    PRIOR_CLASS.format(cls="EarlyPrior", name="early")
    + """

@hookimpl
def harness_register_priors(register):
    register(EarlyPrior)


@hookimpl
def harness_register_datasets(register):
    raise SystemExit("no datasets today")
"""
)


@pytest.mark.parametrize(
    ("module", "source", "prior", "error"),
    [
        ("half_plugin", HALF_REGISTERED, "half", "RuntimeError: the second class needs libbar"),
        ("early_plugin", REGISTERED_THEN_OTHER_HOOK_RAISES, "early", "SystemExit: the plugin called sys.exit("),
    ],
)
def test_a_hook_that_raises_after_register_leaves_none_of_its_classes_registered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    source: str,
    prior: str,
    error: str,
) -> None:
    dist = _install(tmp_path, monkeypatch, module, source)
    registry = load_registry()
    assert prior not in registry.names("prior")
    assert [(b.distribution, b.error.startswith(error)) for b in registry.broken] == [(dist, True)]
    assert module not in {m.module for m in registry.modules}

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"{module} = {module} ({dist} 0.3): {error}" in out
    assert not any(line.split()[:2] == ["prior", prior] for line in out.splitlines()) and "gaussian" in out

    config = write_config(tmp_path / "bench.yaml", priors={prior: {}})
    status = main(["validate", str(config)])
    err = capsys.readouterr().err
    assert status == 2
    line, _ = one_error(err)
    assert f"unknown prior '{prior}'" in line


def test_a_healthy_plugin_beside_a_broken_one_still_registers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path, monkeypatch, "exits_plugin", "import sys\nsys.exit(1)\n")
    healthy = PRIOR_CLASS.format(cls="FinePrior", name="fine")
    healthy += "\n\n@hookimpl\ndef harness_register_priors(register):\n    register(FinePrior)\n"
    _install(tmp_path, monkeypatch, "fine_plugin", healthy)
    registry = load_registry()
    assert "fine" in registry.names("prior")
    assert [b.distribution for b in registry.broken] == ["harness-exits-plugin"]


CTRL_C_DURING_IMPORT = """
import os
import signal
import time

os.kill(os.getpid(), signal.SIGINT)  # what pressing Ctrl-C while this module imports delivers
time.sleep(5)
"""

CTRL_C_SWALLOWED = """
import os
import signal
import time

try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    pass  # a plugin that must not have the last word
"""


@pytest.mark.parametrize("source", [CTRL_C_DURING_IMPORT, CTRL_C_SWALLOWED], ids=["propagated", "swallowed"])
def test_a_real_ctrl_c_while_plugins_load_still_stops_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    _install(tmp_path, monkeypatch, "slow_import_plugin", source)
    with pytest.raises(KeyboardInterrupt):
        load_registry()
    monkeypatch.delitem(sys.modules, "slow_import_plugin", raising=False)
    assert main(["list"]) == 130
    assert "interrupted" in capsys.readouterr().err


# --- plugin options out of range --------------------------------------------------------------------------------

#: (benchmark key, plugin, option, a value out of its range): one or more per kind of built-in plugin.
OUT_OF_RANGE = [
    ("evaluators", "reconstruction", "batch_size", 0),
    ("evaluators", "prior_fit", "samples", 1),
    ("evaluators", "coverage", "samples", 0),
    ("evaluators", "separability", "samples", 3),
    ("evaluators", "feature_diversity", "pairs", 0),
    ("evaluators", "lpips_diversity", "batch_size", -5),
    ("evaluators", "fid", "prc_neighborhood", 0),
    ("evaluators", "inception_score", "splits", 0),
    ("priors", "gmm", "components", 0),
    ("priors", "gmm", "reg_covar", -1e-3),
    ("priors", "realnvp", "depth", 0),
    ("priors", "realnvp", "cond_dim", -1),
    ("priors", "realnvp-ex-post", "steps", 0),
    ("priors", "realnvp-ex-post", "lr", 0.0),
    ("priors", "gan", "d_steps", 0),
    ("regularizers", "adversarial", "hidden", 0),
    ("regularizers", "adversarial", "r1", -1.0),
    ("datasets", "digits", "test_fraction", 1.0),
    ("datasets", "moons", "n_train", 0),
    ("datasets", "eight-gaussians", "std", -0.1),
    ("datasets", "mnist", "max_train", 0),
    ("datasets", "celeba", "max_images", 0),
]


@pytest.mark.parametrize(
    ("key", "plugin", "option", "value"), OUT_OF_RANGE, ids=[f"{p}.{o}" for _, p, o, _ in OUT_OF_RANGE]
)
def test_option_out_of_range_stops_the_run_before_training_naming_option_and_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, plugin: str, option: str, value: float
) -> None:
    config = write_config(tmp_path / "bench.yaml", **{key: {plugin: {option: value}}})
    status = main(["run", str(config), "--dry-run", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2, err
    line, _ = one_error(err)
    assert f"benchmarks.tiny.{key}.{plugin}" in line
    assert f"{option} must be " in line and f"got {value!r}" in line
    assert not (tmp_path / "out").exists()


def _numeric_options(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls.__init__)
    params = inspect.signature(cls.__init__).parameters
    numeric = {int, float, int | None, float | None}
    return [name for name in params if name not in ("self", "latent_dim") and hints.get(name) in numeric]


def _builtin_options() -> list[tuple[str, str, str]]:
    registry = load_registry()
    return [
        (info.kind, info.name, option)
        for info in registry
        if info.distribution == "prior-harness"
        for option in _numeric_options(info.cls)
    ]


@pytest.mark.parametrize(("kind", "name", "option"), _builtin_options())
def test_every_numeric_option_of_every_builtin_plugin_rejects_a_negative_value(
    registry: Registry, kind: Kind, name: str, option: str
) -> None:
    """No built-in count, size, rate, width or probability makes sense below zero: each must say so by name."""
    cls = registry.get(kind, name)
    supplied = {"latent_dim": 4} if kind == "prior" else {}
    if name == "paired-images":
        supplied = {"root": "/nonexistent/pairs"}  # required; the constructor reads no file
    with pytest.raises(ValueError, match=option):
        cls(**supplied, **{option: -1})


class _Bounded:
    @checked_options
    def __init__(
        self,
        size: Annotated[int, Field(ge=1)] = 1,
        share: Annotated[float, Field(gt=0, lt=1, description="a fraction of the split")] = 0.5,
        cap: Annotated[int, Field(ge=2)] | None = None,
        label: str = "x",
    ) -> None:
        self.size, self.share, self.cap = size, share, cap


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size must be at least 1, got 0"),
        ({"share": 1.0}, "share must be between 0 and 1, exclusive (a fraction of the split), got 1.0"),
        ({"share": math.nan}, "share must be between 0 and 1, exclusive (a fraction of the split), got nan"),
        ({"size": -2, "share": 0.1}, "size must be at least 1, got -2"),
        ({"cap": 1}, "cap must be at least 2 or null, got 1"),
    ],
)
def test_checked_options_rejects_out_of_range_values_on_direct_construction(
    options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        _Bounded(**options)
    assert str(info.value) == message


def test_checked_options_accepts_the_bounds_themselves_null_and_leaves_the_signature_alone() -> None:
    made = _Bounded(size=1, share=0.25, cap=None, label="y")
    assert (made.size, made.share, made.cap) == (1, 0.25, None)
    assert list(inspect.signature(_Bounded.__init__).parameters) == ["self", "size", "share", "cap", "label"]
    # The options model the harness builds from the signature still sees plain types.
    assert typing.get_type_hints(_Bounded.__init__)["size"] is int


def test_digits_test_fraction_is_refused_exactly_where_a_split_would_miss_a_class() -> None:
    with pytest.raises(ValueError, match=r"test_fraction 0.005 leaves 9 images in one split; .*one per class"):
        Digits(test_fraction=0.005)
    with pytest.raises(ValueError, match=r"test_fraction 0.995 leaves 8 images"):
        Digits(test_fraction=0.995)
    # The smallest share that gives 10 test images: scikit-learn's stratified split takes it.
    assert len(Digits(test_fraction=0.0051).load("test")) == 10
