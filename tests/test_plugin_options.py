"""Plugin options declared in the constructor (``Annotated[int, Field(ge=1, description=...)]``) are checked from
YAML before anything trains and shown by ``harness describe``; plugins written the old way keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from harness import Prior
from harness.api import checked_options
from harness.cli import main
from harness.cli.describe import option_line
from harness.options import option_specs
from test_config_errors import bench, register_priors_for_cli, rejected, write


class _OldStylePrior(Prior):
    """A third-party prior written before bounds were declared: plain annotations and its own check."""

    name = "test-old-style"

    def __init__(self, latent_dim: int, scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.latent_dim, self.scale = latent_dim, scale


class _DeclaredPrior(Prior):
    """Bounds declared in the signature, without ``checked_options``: YAML validation alone must enforce them."""

    name = "test-declared"

    def __init__(
        self,
        latent_dim: int,
        depth: Annotated[int, Field(ge=1, le=12, description="coupling layers")] = 4,
        width: Annotated[int, Field(ge=8)] | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim, self.depth, self.width = latent_dim, depth, width


class _CheckedPrior(_DeclaredPrior):
    name = "test-checked"

    @checked_options
    def __init__(self, latent_dim: int, depth: Annotated[int, Field(ge=1, description="coupling layers")] = 4) -> None:
        super().__init__(latent_dim, depth)


@pytest.fixture
def with_test_priors(monkeypatch: pytest.MonkeyPatch) -> None:
    register_priors_for_cli(monkeypatch, _OldStylePrior, _DeclaredPrior, _CheckedPrior)


@pytest.mark.parametrize(
    ("priors", "expected"),
    [
        pytest.param("{test-old-style: {scale: -1.0}}", "scale must be > 0, got -1.0", id="old-style-own-check"),
        pytest.param("{test-declared: {depth: 0}}", "depth must be between 1 and 12 (coupling layers), got 0",
                     id="declared-lower-bound-from-yaml"),
        pytest.param("{test-declared: {depth: 13}}", "depth must be between 1 and 12 (coupling layers), got 13",
                     id="declared-upper-bound-from-yaml"),
        pytest.param("{test-declared: {width: 4}}", "width must be at least 8 or null, got 4", id="optional-bound"),
        pytest.param("{test-checked: {depth: 0}}", "depth must be at least 1 (coupling layers), got 0",
                     id="checked-options"),
    ],
)
def test_an_option_out_of_range_is_one_error_line_naming_file_key_value_and_bound(
    with_test_priors: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], priors: str, expected: str
) -> None:
    cfg = write(tmp_path, bench(priors=priors))
    line, _ = rejected(capsys, ["validate", str(cfg), "--config-only"])
    prior = priors.split(":")[0].strip("{ ")
    assert line.startswith(f"error: {cfg}: benchmarks.b.priors.{prior}"), line
    assert expected in line, line


def test_options_in_range_and_null_pass_and_resolve_with_their_defaults(
    with_test_priors: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priors = "{test-declared: {depth: 12, width: null}, test-old-style: {scale: 0.5}, test-checked: {}}"
    assert main(["validate", str(write(tmp_path, bench(priors=priors))), "--config-only"]) == 0, capsys.readouterr()


def test_describe_prints_type_default_bound_and_description_of_each_option(
    with_test_priors: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", "test-declared"]) == 0
    out = capsys.readouterr().out
    assert "test-declared (prior;" in out and "without ``checked_options``" in out
    assert "  depth: int = 4 (between 1 and 12): coupling layers" in out
    assert "  width: int | None = None (at least 8 or null)" in out
    assert "set by the harness, not in YAML: latent_dim" in out
    assert main(["describe", "test-old-style"]) == 0
    assert "  scale: float = 1.0\n" in capsys.readouterr().out


def test_describe_of_an_unknown_or_ambiguous_name_is_one_error_line(
    with_test_priors: None, capsys: pytest.CaptureFixture[str]
) -> None:
    line, fix = rejected(capsys, ["describe", "test-declard"])
    assert "unknown plugin 'test-declard' (did you mean 'test-declared'?)" in line and fix == "  see `harness list`"
    line, _ = rejected(capsys, ["describe", "gaussian", "--kind", "evaluator"])
    assert "unknown evaluator 'gaussian'" in line


def test_every_built_in_plugin_describes_its_options() -> None:
    from harness.registry import load_registry

    for info in load_registry():
        for spec in option_specs(info.cls):
            line = option_line(spec)
            assert line.startswith(f"  {spec.name}: "), (info.name, line)
            assert (" required" in line) == spec.required, (info.name, line)
            if spec.limits:
                assert spec.range_text is not None and spec.range_text in line
