"""Bad input ends in exit status 2 and one `error:` line a researcher can act on: never a traceback, never a trained cell.

The line names the file, the key path and the bad value or the valid choices; at most one indented fix line follows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import harness.cli.common
from harness import Prior, hookimpl
from harness.cli import main
from harness.registry import load_registry


def bench(extra: str = "", datasets: str = "[digits]", priors: str = "{gaussian: {}}", regularizers: str = "[kl]") -> str:
    """One valid benchmark ``b`` with ``extra`` (indented YAML lines) added to it."""
    return (
        "benchmarks:\n"
        "  b:\n"
        f"    datasets: {datasets}\n"
        f"    priors: {priors}\n"
        f"    regularizers: {regularizers}\n"
        "    train: {epochs: 1}\n"
        f"{extra}"
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def one_error(stderr: str) -> tuple[str, str | None]:
    """The ``error:`` line and the optional fix line; fails unless stderr is exactly that (plugin warnings aside)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: plugin ")]
    assert lines, "nothing on stderr"
    assert lines[0].startswith("error: "), stderr
    assert sum(line.startswith("error:") for line in lines) == 1, stderr
    assert len(lines) <= 2, f"more than an error line and one fix line:\n{stderr}"
    if len(lines) == 2:
        assert lines[1].startswith("  ") and lines[1].strip(), f"second line is not an indented fix line:\n{stderr}"
        return lines[0], lines[1]
    return lines[0], None


def rejected(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[str, str | None]:
    status = main(argv)
    stderr = capsys.readouterr().err
    assert status == 2, f"exit status {status}, stderr:\n{stderr}"
    return one_error(stderr)


BAD_CONFIGS = [
    # --- the file's shape: unknown keys (with close-match suggestions), types, ranges ---
    pytest.param(
        "benchmark:\n  b: {datasets: [digits], priors: [gaussian], regularizers: [kl]}\n",
        ["benchmark: unknown key 'benchmark'", "(did you mean 'benchmarks'?)", "known: benchmarks, searches"],
        id="unknown-top-level-key-suggests-benchmarks",
    ),
    pytest.param(
        "benchmarks:\n  b:\n    datasets: [digits]\n    prior: {gaussian: {}}\n    regularizers: [kl]\n",
        ["benchmarks.b.prior: unknown key 'prior'", "(did you mean 'priors'?)"],
        id="unknown-benchmark-key-suggests-priors-not-missing-priors",
    ),
    pytest.param(
        bench("    train: {epoch: 3}\n").replace("    train: {epochs: 1}\n", ""),
        ["benchmarks.b.train.epoch: unknown key 'epoch'", "(did you mean 'epochs'?)", "batch_size", "lr"],
        id="unknown-train-key-suggests-epochs",
    ),
    pytest.param(
        bench().replace("{epochs: 1}", "{epochs: many}"),
        ["benchmarks.b.train.epochs: 'many'", "integer"],
        id="epochs-not-an-integer",
    ),
    pytest.param(
        bench().replace("{epochs: 1}", "{epochs: 0}"),
        ["benchmarks.b.train.epochs: 0", "greater than or equal to 1"],
        id="epochs-zero",
    ),
    pytest.param(
        bench().replace("{epochs: 1}", "{epochs: 1, batch_size: -1}"),
        ["benchmarks.b.train.batch_size: -1", "greater than or equal to 1"],
        id="batch-size-negative",
    ),
    pytest.param(
        bench().replace("{epochs: 1}", "{epochs: 1, lr: 0}"),
        ["benchmarks.b.train.lr: 0", "greater than 0"],
        id="learning-rate-zero",
    ),
    pytest.param(
        bench("    beta: [1.0, -0.5]\n"),
        ["benchmarks.b.beta[1]: -0.5", "greater than or equal to 0"],
        id="negative-beta-named-by-index",
    ),
    pytest.param(bench("    beta: []\n"), ["benchmarks.b.beta: empty"], id="beta-empty-list"),
    pytest.param(bench("    seeds: []\n"), ["benchmarks.b.seeds: empty"], id="seeds-empty-list"),
    pytest.param(
        bench("    seeds: [0, -1]\n"),
        ["benchmarks.b.seeds[1]: -1", "greater than or equal to 0"],
        id="negative-seed",
    ),
    pytest.param(
        bench("    seeds: [0.5]\n"), ["benchmarks.b.seeds[0]: 0.5", "integer"], id="fractional-seed"
    ),
    pytest.param(
        bench("    beta: [0.5, 1.0, 0.5]\n"),
        ["benchmarks.b.beta: repeated values in [0.5, 1.0, 0.5]"],
        id="repeated-beta-values",
    ),
    pytest.param(bench(datasets="[]"), ["benchmarks.b.datasets: empty"], id="datasets-empty-list"),
    pytest.param(bench(priors="{}"), ["benchmarks.b.priors: empty"], id="priors-empty-mapping"),
    pytest.param(
        "benchmarks:\n  b:\n    datasets: [digits]\n    regularizers: [kl]\n",
        ["benchmarks.b: give priors and regularizers, or named models"],
        id="priors-missing",
    ),
    pytest.param(
        bench("    models: {vae: {priors: [gaussian], regularizers: [kl]}}\n"),
        ["benchmarks.b: give either priors and regularizers or named models, not both"],
        id="grid-and-models-both",
    ),
    pytest.param(
        "benchmarks:\n  b:\n    datasets: [digits]\n    models: {vae: {priors: [gausian], regularizers: [kl]}}\n",
        ["benchmarks.b.models.vae.priors.gausian: unknown prior 'gausian'", "did you mean 'gaussian'"],
        id="model-variant-unknown-prior",
    ),
    pytest.param(
        "benchmarks:\n  b:\n    datasets: [digits]\n    models: {vae: {priors: [gaussian], regularizers: [kl], model: {gamma: 0}}}\n",
        ["benchmarks.b.models.vae.model.gamma: 0", "> 0 or 'learned'"],
        id="model-variant-bad-gamma",
    ),
    pytest.param(
        bench("    model: {perceptual: {layers: [relu1_1, relu4_2x]}}\n"),
        ["benchmarks.b.model.perceptual.layers[1]: 'relu4_2x': unknown VGG19 layer", "did you mean 'relu4_2'",
         "known: relu1_1, relu1_2, relu2_1"],
        id="perceptual-unknown-vgg-layer-suggests-the-closest",
    ),
    pytest.param(
        bench("    model: {perceptual: {weight: 0}}\n"),
        ["benchmarks.b.model.perceptual.weight: 0", "greater than 0"],
        id="perceptual-weight-zero",
    ),
    pytest.param(
        bench("    model: {perceptual: {wieght: 2}}\n"),
        ["benchmarks.b.model.perceptual.wieght: unknown key 'wieght'", "(did you mean 'weight'?)"],
        id="perceptual-unknown-key-suggests-weight",
    ),
    pytest.param(
        bench("    claims: [{text: t, kind: better, metric: fidd, a: {beta: 0}, b: {beta: 1}}]\n"),
        ["benchmarks.b.claims[0].a: unknown metric 'fidd'"],
        id="claim-unknown-metric",
    ),
    pytest.param(
        bench("    model: mlp\n"),
        ["benchmarks.b.model: 'mlp'", "valid dictionary"],
        id="model-a-string-not-a-mapping",
    ),
    pytest.param(
        bench("    model: {likelihood: poisson}\n"),
        ["benchmarks.b.model.likelihood: 'poisson'", "'gaussian' or 'bernoulli'"],
        id="likelihood-not-gaussian-or-bernoulli",
    ),
    pytest.param(
        bench(priors="{realnvp: {depth: [2, 0]}}"),
        ["benchmarks.b.priors.realnvp", "'depth': 0", "depth must be at least 1, got 0"],
        id="prior-constructor-rejects-option-value",
    ),
    pytest.param(
        bench("    model: {latent_dim: 0}\n"),
        ["benchmarks.b.model.latent_dim: 0", "greater than or equal to 1"],
        id="latent-dim-zero",
    ),
    pytest.param(
        bench("    model: {gamma: -1}\n"), ["benchmarks.b.model.gamma: -1", "> 0 or 'learned'"], id="gamma-negative"
    ),
    pytest.param(
        bench("    model: {gamma: learnt}\n"), ["benchmarks.b.model.gamma: 'learnt'", "> 0 or 'learned'"],
        id="gamma-unknown-word",
    ),
    pytest.param(
        "benchmarks:\n"
        "  a: {default: true, datasets: [digits], priors: [gaussian], regularizers: [kl]}\n"
        "  b: {default: true, datasets: [digits], priors: [gaussian], regularizers: [kl]}\n",
        ["benchmarks: more than one benchmark has default: true (a, b); keep one"],
        id="two-default-benchmarks",
    ),
    # --- YAML itself ---
    pytest.param(
        bench("    beta: [1.0]\n    beta: [2.0]\n"),
        ["line 8: duplicate key 'beta'"],
        id="duplicate-key-names-line-and-key",
    ),
    pytest.param(
        bench(priors="{gaussian: {}, gaussian: {}}"),
        ["line 4: duplicate key 'gaussian'"],
        id="duplicate-key-inside-flow-mapping",
    ),
    pytest.param(
        "benchmarks:\n  b:\n    datasets: [digits\n    priors: {gaussian: {}}\n",
        ["line 4 column 11: invalid YAML"],
        id="invalid-yaml-names-line-and-column",
    ),
    pytest.param(
        "benchmarks:\n\tb: {}\n", ["line 2 column 1: invalid YAML", "'\\t'"], id="tab-indentation"
    ),
    pytest.param(
        "- benchmarks\n- b\n", ["the file must be a mapping with a top-level 'benchmarks:' key"], id="file-is-a-list"
    ),
    pytest.param("", ["the file is empty", "a mapping with a top-level 'benchmarks:' key"], id="file-is-empty"),
    # --- plugin names (with close-match suggestions and the known names) ---
    pytest.param(
        bench(priors="{gausian: {}}"),
        ["benchmarks.b.priors.gausian: unknown prior 'gausian'", "(did you mean 'gaussian'?)", "; known: ", "gaussian"],
        id="unknown-prior-suggests-gaussian",
    ),
    pytest.param(
        bench(regularizers="[kll]"),
        ["benchmarks.b.regularizers.kll: unknown regularizer 'kll'", "(did you mean 'kl'?)", "; known: ", "none"],
        id="unknown-regularizer-suggests-kl",
    ),
    pytest.param(
        bench(datasets="[digit]"),
        ["benchmarks.b.datasets.digit: unknown dataset 'digit'", "(did you mean 'digits'?)", "; known: ", "moons"],
        id="unknown-dataset-suggests-digits",
    ),
    pytest.param(
        bench("    model: {architecture: transformer}\n"),
        ["benchmarks.b.model.architecture: unknown architecture 'transformer'", "; known: ", "conv", "mlp"],
        id="unknown-architecture-lists-known",
    ),
    pytest.param(
        bench("    evaluators: {fidd: {}}\n"),
        ["benchmarks.b.evaluators.fidd: unknown evaluator 'fidd'", "did you mean 'fid'", "; known: ", "reconstruction"],
        id="unknown-evaluator-lists-known",
    ),
    pytest.param(
        bench("    primary_metric: reconstruction.mae\n"),
        [
            "benchmarks.b.primary_metric: unknown metric 'reconstruction.mae'",
            "(did you mean 'reconstruction.mse'?)",
            "known: reconstruction.mse, reconstruction.psnr",
        ],
        id="unknown-primary-metric-suggests-and-lists-metrics",
    ),
    # --- plugin options, validated against the plugin class ---
    pytest.param(
        bench(priors="{gaussian: {scale: 2}}"),
        ["benchmarks.b.priors.gaussian.scale: unknown option 'scale' for 'gaussian'", "known: (none)"],
        id="option-for-a-prior-that-has-none",
    ),
    pytest.param(
        bench("    model: {architecture: mlp, architecture_options: {hidden: wide}}\n"),
        ["benchmarks.b.model.architecture_options.hidden: 'wide'", "integer"],
        id="wrong-typed-architecture-option",
    ),
    pytest.param(
        bench(datasets="[{digits: {colour: true}}]"),
        ["benchmarks.b.datasets.digits.colour: unknown option 'colour' for 'digits'", "known: test_fraction"],
        id="unknown-dataset-option-lists-known",
    ),
    pytest.param(
        bench(regularizers="{kl: {analytic: []}}"),
        ["benchmarks.b.regularizers.kl.analytic: []", "empty list gives no values to try"],
        id="empty-regularizer-option-grid-axis",
    ),
    pytest.param(
        bench("    evaluators: {reconstruction: {batch_size: x}}\n"),
        ["benchmarks.b.evaluators.reconstruction.batch_size: 'x'", "integer"],
        id="wrong-typed-evaluator-option",
    ),
    pytest.param(
        bench(datasets="[{digits: {test_fraction: 2}}]"),
        ["benchmarks.b.datasets.digits: {'test_fraction': 2.0}", "between 0 and 1"],
        id="dataset-constructor-rejects-option-value",
    ),
    pytest.param(
        bench("    model: {architecture_options: {hidden: 0}}\n"),
        ["benchmarks.b.model.architecture_options: {'hidden': 0, 'layers': 2}", "hidden must be at least 1, got 0"],
        id="architecture-constructor-rejects-option-value",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_validate_rejects_bad_config_with_one_error_line_naming_file_key_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    error, _ = rejected(capsys, ["validate", str(path)])
    assert error.startswith(f"error: {path}: "), error
    for part in expected:
        assert part in error, f"{part!r} not in {error!r}"


def test_unknown_metric_error_is_followed_by_a_fix_line_saying_where_metrics_come_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, bench("    primary_metric: mse\n"))
    _, fix = rejected(capsys, ["validate", str(path)])
    assert fix is not None and "<evaluator>.<key>" in fix


def test_valid_minimal_config_passes_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, bench("    beta: [0.5, 1.0]\n    seeds: [0, 1]\n"))
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "error:" not in captured.err
    assert "b: ok, 4 cells (0 skipped)" in captured.out


# --- a prior with options (a test-local plugin): its option grid axes and option names are checked too ---


class _MixturePrior(Prior):
    """Registered only for these tests: a prior with a required option, ``components``, that can be a grid axis."""

    name = "test-mixture"

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.components = components


def register_priors_for_cli(monkeypatch: pytest.MonkeyPatch, *priors: type[Prior]) -> None:
    """Make the CLI's registry hold ``priors`` too, registered by a plugin module as a third party would."""

    def register_all(register: Callable[[type[Prior]], None]) -> None:
        for prior in priors:
            register(prior)

    plugin = types.ModuleType("test_cli_priors_plugin")
    plugin.harness_register_priors = hookimpl(register_all)  # type: ignore[attr-defined]
    monkeypatch.setattr(harness.cli.common, "load_registry", lambda: load_registry(extra_modules=[plugin]))


@pytest.fixture
def with_mixture_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    register_priors_for_cli(monkeypatch, _MixturePrior)


@pytest.mark.parametrize(
    ("priors", "expected"),
    [
        pytest.param(
            "{test-mixture: {components: []}}",
            ["benchmarks.b.priors.test-mixture.components: []", "empty list gives no values to try"],
            id="empty-prior-option-grid-axis",
        ),
        pytest.param(
            "{test-mixture: {components: [2, many]}}",
            ["benchmarks.b.priors.test-mixture.components: 'many'", "integer"],
            id="one-bad-value-on-a-prior-option-grid-axis",
        ),
        pytest.param(
            "{test-mixture: {component: 3}}",
            ["unknown option 'component' for 'test-mixture'", "(did you mean 'components'?)"],
            id="misspelt-required-prior-option-suggests-it-instead-of-calling-it-missing",
        ),
    ],
)
def test_validate_checks_prior_option_grid_axes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_mixture_prior: None, priors: str, expected: list[str]
) -> None:
    path = write(tmp_path, bench(priors=priors))
    error, _ = rejected(capsys, ["validate", str(path)])
    assert error.startswith(f"error: {path}: "), error
    for part in expected:
        assert part in error, f"{part!r} not in {error!r}"


def test_prior_option_grid_axis_expands_to_one_cell_per_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_mixture_prior: None
) -> None:
    path = write(tmp_path, bench(priors="{test-mixture: {components: [2, 8]}}"))
    assert main(["validate", str(path)]) == 0
    assert "b: ok, 2 cells" in capsys.readouterr().out


# --- `harness run` rejects the same input before it trains anything ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(bench(priors="{gausian: {}}"), ["(did you mean 'gaussian'?)"], id="unknown-prior"),
        pytest.param(bench().replace("{epochs: 1}", "{epochs: 0}"), ["train.epochs: 0"], id="epochs-zero"),
        pytest.param(
            bench(datasets="[{digits: {test_fraction: 2}}]"),
            ["benchmarks.b.datasets.digits", "between 0 and 1"],
            id="dataset-constructor-rejects-option-value",
        ),
    ],
)
def test_run_rejects_bad_config_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path, out = write(tmp_path, text), tmp_path / "out"
    error, _ = rejected(capsys, ["run", str(path), "--out", str(out), "--quiet"])
    assert error.startswith(f"error: {path}: "), error
    for part in expected:
        assert part in error, f"{part!r} not in {error!r}"
    assert not (out / "cells").exists()


def test_run_rejects_missing_dataset_files_before_training_with_a_fix_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # mnist, not fashion-mnist: fashion-mnist falls back to Debian's /usr/share/datasets copy when installed.
    empty = tmp_path / "data"
    empty.mkdir()
    path, out = write(tmp_path, bench(datasets=f"[{{mnist: {{data_root: {json.dumps(str(empty))}}}}}]")), tmp_path / "out"
    error, fix = rejected(capsys, ["run", str(path), "--out", str(out), "--quiet"])
    assert error.startswith(f"error: {path}: benchmarks.b.datasets.mnist: "), error
    assert "missing" in error and "train-images-idx3-ubyte" in error and str(empty) in error
    assert fix is not None and "download: true" in fix and str(empty / "MNIST" / "raw") in fix
    assert not (out / "cells").exists()
    assert list(empty.iterdir()) == []  # nothing downloaded, nothing half-written


TWO_BENCHMARKS = (
    "benchmarks:\n"
    "  quick: {default: true, datasets: [digits], priors: [gaussian], regularizers: [kl], train: {epochs: 1}}\n"
    "  toy: {datasets: [moons], priors: [gaussian], regularizers: [kl], train: {epochs: 1}}\n"
)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--benchmark", "nope"], ["--benchmark: unknown benchmark 'nope'", "known: quick, toy"], id="nope"),
        pytest.param(
            ["--benchmark", "quik"], ["unknown benchmark 'quik'", "(did you mean 'quick'?)"], id="typo-suggests"
        ),
        pytest.param(["--device", "cuda:7"], ["--device: 'cuda:7'"], id="device-cuda-7"),
        pytest.param(["--device", "gpu0"], ["--device: 'gpu0' is not a device", "cuda:N"], id="device-not-a-device"),
        pytest.param(["--device", "mps"], ["--device: 'mps'", "cuda:N"], id="device-unsupported-type"),
        pytest.param(["--epochs", "3"], ["unrecognized arguments: --epochs 3"], id="unknown-flag"),
    ],
)
def test_run_rejects_bad_command_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    path, out = write(tmp_path, TWO_BENCHMARKS), tmp_path / "out"
    error, _ = rejected(capsys, ["run", str(path), "--out", str(out), "--quiet", *argv])
    for part in expected:
        assert part in error, f"{part!r} not in {error!r}"
    assert not (out / "cells").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["validate", "--strict", "{path}"], ["unrecognized arguments: --strict"], id="unknown-flag"),
        pytest.param(["validate"], ["the following arguments are required: config"], id="missing-config-argument"),
        pytest.param(["valdate", "{path}"], ["invalid choice: 'valdate'", "'validate'"], id="unknown-command"),
        pytest.param(["validate", "{missing}"], ["no-such.yaml: no such config file"], id="config-file-missing"),
    ],
)
def test_cli_rejects_bad_arguments_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    path = write(tmp_path, bench())
    argv = [a.format(path=path, missing=tmp_path / "no-such.yaml") for a in argv]
    error, _ = rejected(capsys, argv)
    for part in expected:
        assert part in error, f"{part!r} not in {error!r}"


def test_console_validate_exits_2_with_one_error_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, bench(priors="{gausian: {}}"))
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    error, _ = one_error(proc.stderr)
    assert error.startswith(f"error: {path}: benchmarks.b.priors.gausian: unknown prior 'gausian'"), error
    assert "(did you mean 'gaussian'?)" in error
    assert proc.stdout == ""
