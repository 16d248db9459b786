"""A hostile or broken benchmarks.yaml is one `error:` line and exit status 2: names cannot become paths, the YAML
loader is bounded (size, depth, aliases, encoding), quoted values are capped, and validating a plugin's options
allocates nothing and turns whatever its constructor raises into an error naming the options' key path.

Every test runs the real ``harness`` CLI, in process or, where memory is the point, in a subprocess under a limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from harness import Prior
from harness.cli import main
from harness.config import MAX_DEPTH, MAX_EXPANDED, MAX_FILE_BYTES, BenchmarkConfig, load_config, valid_name
from harness.grid import MAX_CELLS, MAX_COMBINATIONS, MAX_ELEMENTS, MAX_MODULES, expand
from harness.registry import Registry
from harness.model.train import build_model
from test_config_errors import bench, one_error, register_priors_for_cli, write

REPO = Path(__file__).resolve().parents[1]
NAME_HELP = "letters, digits, '_', '.' and '-'"


def rejected(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with exactly one error line (and at most one fix line). Returns the error line."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, f"exit status {status}\nstdout:\n{captured.out}\nstderr:\n{captured.err}"
    error, _ = one_error(captured.err)
    return error


def _address_space_limit() -> int:
    """This process's address space plus 2 GiB: the child imports what this process imported (torch alone maps
    about 3 GiB of address space), so the 2 GiB is what the YAML may cost it."""
    status = Path("/proc/self/status").read_text()
    vm_kib = int(next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1])
    return vm_kib * 1024 + (2 << 30)


def _cli_under_memory_limit(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    limit = _address_space_limit()

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit_memory, env=env)


# --- names that become file and folder names --------------------------------------------------------------


BAD_NAMES = ["../../x", "/abs", "a/b", "..", ".hidden", "a..b", "x" * 81, "", "two words", "β-vae", "-flag", "a\\b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_benchmark_name_that_is_not_a_plain_file_name_is_refused_saying_which_characters_are_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    grid = "{datasets: [digits], priors: [gaussian], regularizers: [kl]}"
    path = write(tmp_path, f"benchmarks:\n  {json.dumps(name)}: {grid}\n")
    error = rejected(capsys, ["validate", str(path)])
    assert error.startswith(f"error: {path}: benchmarks: "), error
    assert "is not a valid benchmark name" in error and NAME_HELP in error and "'..'" in error


def test_benchmark_name_that_is_a_number_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "benchmarks:\n  1: {datasets: [digits], priors: [gaussian], regularizers: [kl]}\n")
    assert "1 is not a valid benchmark name" in rejected(capsys, ["validate", str(path)])


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b"])
def test_search_name_that_is_a_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    spec = "{benchmark: b, prior: gaussian, regularizer: kl, space: {beta: {low: 0.1, high: 1}}, objective: reconstruction.mse}"
    search = f"searches:\n  {json.dumps(name)}: {spec}\n"
    path = write(tmp_path, bench() + search)
    error = rejected(capsys, ["validate", str(path)])
    assert error.startswith(f"error: {path}: searches: "), error
    assert "is not a valid search name" in error and NAME_HELP in error


@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_model_variant_name_that_is_a_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    text = f"benchmarks:\n  b:\n    datasets: [digits]\n    models: {{{json.dumps(name)}: {{priors: [gaussian], regularizers: [kl]}}}}\n"
    error = rejected(capsys, ["validate", str(write(tmp_path, text))])
    assert "benchmarks.b.models: " in error and "is not a valid model variant name" in error and NAME_HELP in error


@pytest.mark.parametrize("name", ["../../x", "/abs", "quick/../toy"])
def test_benchmark_named_on_the_command_line_that_is_a_path_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = write(tmp_path, bench())
    out = tmp_path / "out"
    error = rejected(capsys, ["run", str(path), "-b", name, "--out", str(out), "--dry-run"])
    assert f"--benchmark: {name!r} is not a valid benchmark name" in error and NAME_HELP in error
    assert not out.exists()


def test_search_named_on_the_command_line_that_is_a_path_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, bench())
    error = rejected(capsys, ["search", str(path), "--search", "../x", "--out", str(tmp_path / "out")])
    assert "--search: '../x' is not a valid search name" in error


def test_every_name_in_the_repos_benchmarks_yaml_is_valid() -> None:
    config = load_config(REPO / "benchmarks.yaml")
    names = [*config.benchmarks, *config.searches, *(v for b in config.benchmarks.values() for v in b.models or {})]
    assert names and all(valid_name(n) for n in names), [n for n in names if not valid_name(n)]


# --- the YAML loader's bounds -----------------------------------------------------------------------------


def test_file_over_the_size_bound_is_refused_saying_its_size_and_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, bench() + "#" * MAX_FILE_BYTES + "\n")
    size = path.stat().st_size
    error = rejected(capsys, ["validate", str(path)])
    assert f"{size:,} bytes" in error and f"{MAX_FILE_BYTES:,}-byte (1 MiB) limit" in error


def test_deeply_nested_yaml_is_an_error_line_not_a_recursion_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "benchmarks: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert f"nested more than {MAX_DEPTH} levels deep" in rejected(capsys, ["validate", str(path)])


def test_nesting_within_the_bound_is_accepted_by_the_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 55 levels below benchmarks.b.priors.gaussian.x (59 in all): the loader accepts it, the plugin rejects the option.
    path = write(tmp_path, bench(priors="{gaussian: {x: " + "[" * 55 + "]" * 55 + "}}"))
    assert "unknown option 'x' for 'gaussian'" in rejected(capsys, ["validate", str(path)])


def test_aliases_that_nest_beyond_the_depth_bound_once_expanded_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = "[" * 40 + "]" * 40
    text = f"a: &a {deep}\nb: &b {'[' * 30}*a{']' * 30}\n" + bench()
    error = rejected(capsys, ["validate", str(write(tmp_path, text))])
    assert f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded" in error


def _billion_laughs() -> str:
    """Nine levels of nine aliases each: under 800 bytes that expand to 9**9 (387 million) strings, at a key whose
    error message quotes the value (so without the bound the quote alone would take gigabytes)."""
    levels = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return bench().replace("{epochs: 1}", "{epochs: [" + ", ".join(levels) + "]}")


def _merge_laughs() -> str:
    """The same with ``<<`` merges: each level merges the previous mapping six times, twice (12**8 in all)."""
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}"]
    lines += [f"m{i}: &m{i} {{<<: [{','.join([f'*m{i - 1}'] * 6)}], n: {{<<: [{','.join([f'*m{i - 1}'] * 6)}]}}}}"
              for i in range(1, 9)]
    return "\n".join(lines) + "\nbenchmarks: {b: {datasets: [digits], priors: {gaussian: *m8}, regularizers: [kl]}}\n"


@pytest.mark.parametrize("make", [_billion_laughs, _merge_laughs], ids=["nested-aliases", "nested-merges"])
def test_alias_bomb_is_refused_quickly_under_a_memory_limit(tmp_path: Path, make: Callable[[], str]) -> None:
    text = make()
    assert len(text.encode()) <= 1000
    path = write(tmp_path, text)
    proc = _cli_under_memory_limit("validate", str(path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    error, _ = one_error(proc.stderr)
    assert error.startswith(f"error: {path}: line ") and f"more than {MAX_EXPANDED:,} nodes and characters" in error
    assert "billion laughs" in error


def test_repo_benchmarks_yaml_keeps_its_anchors_and_merges(tmp_path: Path) -> None:
    config = load_config(REPO / "benchmarks.yaml")
    base, long = config.benchmarks["paper-beta-fashion-mnist-cpu"], config.benchmarks["paper-beta-fashion-mnist-cpu-long"]
    assert long.datasets == base.datasets and long.evaluators == base.evaluators  # merged from &paper-beta-cpu
    assert long.train.epochs == 50 != base.train.epochs  # overridden beside the merge


def test_alias_that_refers_to_its_own_node_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "a: &a [1, *a]\n" + bench())
    assert "line 1: an alias refers to a node that contains it (a cycle)" in rejected(capsys, ["validate", str(path)])


def test_non_utf8_bytes_name_the_file_and_byte_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.yaml"
    head = bench().encode()
    path.write_bytes(head + b"    description: caf\xe9\n")
    error = rejected(capsys, ["validate", str(path)])
    offset = len(head) + len(b"    description: caf")
    assert error.startswith(f"error: {path}: byte {offset} (line 7): not UTF-8 text (byte 0xe9)"), error


@pytest.mark.parametrize("text", ["", "\n\n   \n", "# only a comment\n# and another\n"], ids=["empty", "blank", "comments"])
def test_empty_file_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write(tmp_path, text)
    error = rejected(capsys, ["validate", str(path)])
    assert error.startswith(f"error: {path}: the file is empty"), error


@pytest.mark.parametrize(
    ("text", "what"), [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("~\n", "null"), ("42\n", "a number")]
)
def test_top_level_that_is_not_a_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, what: str
) -> None:
    error = rejected(capsys, ["validate", str(write(tmp_path, text))])
    assert f"the top level is {what}; the file must be a mapping with a top-level 'benchmarks:' key" in error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("    description: 2024-13-45\n", "invalid YAML value: month must be in 1..12", id="impossible-date"),
        pytest.param("    seeds: [" + "9" * 5000 + "]\n", "invalid YAML value: Exceeds the limit", id="5000-digit-integer"),
        pytest.param("    description: a\x07b\n", "line 7: invalid YAML: character #x0007 is not allowed", id="control-character"),
        pytest.param("    ? [a]\n    : 1\n", "invalid YAML: found unhashable key", id="list-as-key"),
    ],
)
def test_yaml_values_python_cannot_build_are_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    assert expected in rejected(capsys, ["validate", str(write(tmp_path, bench(text)))])


def test_config_path_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not a file (a folder?)" in rejected(capsys, ["validate", str(tmp_path)])


# --- values quoted in errors are capped -------------------------------------------------------------------

LONG = "[" + ", ".join(str(i) for i in range(20_000)) + "]"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param(bench().replace("{epochs: 1}", f"{{epochs: {LONG}}}"), "benchmarks.b.train.epochs: [0, 1, 2", id="pydantic-type-error"),
        pytest.param(bench(f"    model: {{gamma: {LONG}}}\n"), "benchmarks.b.model.gamma: [0, 1, 2", id="own-validator"),
        pytest.param(bench(priors=f"{{gaussian: {LONG}}}"), "benchmarks.b.priors.gaussian: [0, 1, 2", id="plugin-options"),
        pytest.param(bench(f"    beta: [1, {LONG[1:]}\n"), "benchmarks.b.beta: repeated values in [1.0, 0.0, 1.0, 2.0", id="repeated-values"),
        pytest.param(bench(priors=f"{{realnvp: {{hidden: [{LONG}]}}}}"), "benchmarks.b.priors.realnvp.hidden: [0, 1", id="plugin-option-value"),
    ],
)
def test_long_value_in_an_error_is_shown_by_its_start_and_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    error = rejected(capsys, ["validate", str(write(tmp_path, text))])
    assert where in error, error
    assert "… (" in error and " chars)" in error, error
    assert len(error) < 600, error


def test_long_unknown_key_is_capped_in_the_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "k" * 50_000
    # An explicit key (``? key``): YAML allows plain keys of at most 1,024 characters.
    error = rejected(capsys, ["validate", str(write(tmp_path, bench(f"    ? {key}\n    : 1\n")))])
    assert "unknown key 'kkkk" in error and "(50,002 chars)" in error and len(error) < 1000, error


def test_many_unknown_name_choices_are_listed_up_to_a_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    benchmarks = "".join(f"  b{i}: {{datasets: [digits], priors: [gaussian], regularizers: [kl]}}\n" for i in range(200))
    path = write(tmp_path, "benchmarks:\n" + benchmarks)
    error = rejected(capsys, ["run", str(path), "-b", "nope", "--dry-run"])
    assert "… (170 more)" in error and len(error) < 1000, error


# --- plugin options: validation allocates nothing, and any constructor failure is a config error -------------


@pytest.mark.parametrize(
    ("priors", "largest"),
    [
        pytest.param("{realnvp: {hidden: 1e12}}", "hidden: 1,000,000,000,000", id="realnvp-hidden-1e12"),
        pytest.param("{gan: {hidden: 1e12}}", "hidden: 1,000,000,000,000", id="gan-hidden-1e12"),
        pytest.param("{gmm: {components: 1e8}}", "components: 100,000,000", id="gmm-components-1e8"),
    ],
)
def test_prior_of_absurd_size_is_refused_at_validation_naming_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], priors: str, largest: str
) -> None:
    path = write(tmp_path, bench(priors=priors))
    error = rejected(capsys, ["validate", str(path)])
    prior = priors[1:].split(":")[0]
    assert error.startswith(f"error: {path}: benchmarks.b.priors.{prior}: "), error
    assert f"would build more than {MAX_ELEMENTS:,} parameter and buffer elements" in error and largest in error


def test_regularizer_whose_constructor_raises_a_runtime_error_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # hidden × hidden overflows torch's size arithmetic: a RuntimeError, not the ValueError plugins are asked for.
    path = write(tmp_path, bench(regularizers="{adversarial: {hidden: 1e12}}"))
    error = rejected(capsys, ["validate", str(path)])
    assert "benchmarks.b.regularizers.adversarial: {'hidden': 1000000000000" in error and "RuntimeError: " in error


def test_large_but_bounded_prior_validates_without_allocating_its_memory(tmp_path: Path) -> None:
    # 1.3e9 parameters (5 GiB as float32) is under MAX_ELEMENTS, so validation accepts it; built on the meta
    # device it costs nothing, and the child's 2 GiB of headroom proves it.
    latent, hidden = 8, 100_000_000
    assert latent // 2 * hidden + hidden * latent < MAX_ELEMENTS
    priors = f"{{realnvp: {{depth: 1, layers: 1, hidden: {hidden}}}}}"
    path = write(tmp_path, bench(priors=priors, extra="    model: {latent_dim: 8}\n"))
    proc = _cli_under_memory_limit("validate", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "b: ok, 1 cells" in proc.stdout


class _FragilePrior(Prior):
    """Registered only for these tests: its constructor fails with whatever ``fail`` names."""

    name = "test-fragile"

    def __init__(self, latent_dim: int, fail: str = "none", count: int = 1) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        failures: dict[str, BaseException] = {
            "runtime": RuntimeError("cuda kernel exploded"), "assert": AssertionError("shapes differ"),
            "key": KeyError("weights"), "empty": ZeroDivisionError(), "exit": SystemExit(3),
        }
        if fail in failures:
            raise failures[fail]
        # Many small modules: depth the meta device cannot spare (Python objects, not tensors).
        self.blocks = nn.ModuleList(nn.Identity() for _ in range(count))
        self.loc = nn.Parameter(torch.zeros(latent_dim))

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return -(z - self.loc).pow(2).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim) + self.loc


class _ReadsTensorsPrior(Prior):
    """Registered only for these tests: its constructor reads a tensor's value, which a meta tensor does not have."""

    name = "test-reads-tensors"

    def __init__(self, latent_dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.scale = nn.Parameter(torch.tensor(scale))
        if self.scale.item() <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return -(z / self.scale).pow(2).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim) * self.scale


@pytest.fixture
def with_test_priors(monkeypatch: pytest.MonkeyPatch) -> None:
    register_priors_for_cli(monkeypatch, _FragilePrior, _ReadsTensorsPrior)


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        ("runtime", "RuntimeError: cuda kernel exploded"),
        ("assert", "AssertionError: shapes differ"),
        ("key", "KeyError: 'weights'"),
        ("empty", "ZeroDivisionError: (no message)"),
        ("exit", "SystemExit: 3"),
    ],
)
def test_any_exception_from_a_plugin_constructor_is_a_config_error_naming_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_test_priors: None, fail: str, expected: str
) -> None:
    path = write(tmp_path, bench(priors=f"{{test-fragile: {{fail: {fail}}}}}"))
    error = rejected(capsys, ["validate", str(path)])
    assert error == f"error: {path}: benchmarks.b.priors.test-fragile: {{'fail': {fail!r}, 'count': 1}}: {expected}"


def test_plugin_that_registers_too_many_submodules_is_refused_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_test_priors: None
) -> None:
    path = write(tmp_path, bench(priors="{test-fragile: {count: 1e9}}"))
    error = rejected(capsys, ["validate", str(path)])
    assert f"would build more than {MAX_MODULES:,} submodules (its largest option is count: 1,000,000,000)" in error


def test_plugin_whose_constructor_needs_real_tensors_still_validates_and_its_checks_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_test_priors: None
) -> None:
    assert main(["validate", str(write(tmp_path, bench(priors="{test-reads-tensors: {scale: 2.0}}")))]) == 0
    assert "b: ok, 1 cells" in capsys.readouterr().out
    error = rejected(capsys, ["validate", str(write(tmp_path, bench(priors="{test-reads-tensors: {scale: -1.0}}")))])
    assert "benchmarks.b.priors.test-reads-tensors: {'scale': -1.0}: scale must be > 0, got -1.0" in error


#: Options a built-in plugin cannot go without (building it reads no file; check_available would).
REQUIRED_OPTIONS = {"paired-images": {"root": "/nonexistent/pairs"}}


def test_every_installed_plugin_builds_under_validation_and_training_builds_real_tensors(registry: Registry) -> None:
    names = {kind: sorted(registry.names(kind)) for kind in ("dataset", "prior", "regularizer", "evaluator", "architecture")}
    models = {
        f"{arch}-{prior}": {"priors": [prior], "regularizers": names["regularizer"], "model": {"architecture": arch}}
        for arch in names["architecture"] for prior in names["prior"]
    }
    config = BenchmarkConfig.model_validate(
        {"datasets": {ds: REQUIRED_OPTIONS.get(ds, {}) for ds in names["dataset"]}, "models": models,
         "evaluators": names["evaluator"], "model": {"latent_dim": 4}}
    )
    cells = expand("all", config, registry, "b.yaml")  # raises a ConfigError if any plugin fails to build on meta
    assert {c.prior for c in cells} == set(names["prior"]) and {c.dataset for c in cells} == set(names["dataset"])
    cell = next(c for c in cells if c.prior == "realnvp" and c.model["architecture"] == "mlp" and not c.skip_reason)
    model = build_model(cell, registry, (1, 8, 8), torch.device("cpu"))
    devices = {t.device.type for m in model.modules().values() for t in [*m.parameters(), *m.buffers()]}
    assert devices == {"cpu"}, devices
    assert torch.zeros(1).device.type == "cpu"


def test_option_grid_with_too_many_combinations_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = list(range(1, 102))
    path = write(tmp_path, bench(priors=f"{{realnvp: {{depth: {values}, hidden: {values}}}}}"))
    error = rejected(capsys, ["validate", str(path)])
    assert "benchmarks.b.priors.realnvp: its list-valued options make 10,201 combinations" in error
    assert f"more than the {MAX_COMBINATIONS:,} one plugin may have" in error


def test_grid_with_too_many_cells_is_refused_before_the_cells_are_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    betas, seeds = [i / 1000 for i in range(1000)], list(range(101))
    path = write(tmp_path, bench(f"    beta: {betas}\n    seeds: {seeds}\n"))
    error = rejected(capsys, ["validate", str(path)])
    assert f"the grid makes up to 101,000 cells, more than the {MAX_CELLS:,}" in error


# --- validate checks data files and weights, as run --dry-run does ----------------------------------------


def needs_missing_mnist(tmp_path: Path) -> str:
    """A benchmark line whose MNIST folder exists but holds no files."""
    empty = tmp_path / "data"
    empty.mkdir()
    root = json.dumps(str(empty))
    return (f"  needs-mnist: {{default: true, datasets: [{{mnist: {{data_root: {root}}}}}], priors: [gaussian], "
            "regularizers: [kl]}\n")


def test_validate_reports_a_missing_dataset_exactly_as_run_dry_run_does_and_still_checks_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "benchmarks:\n"
        + needs_missing_mnist(tmp_path)
        + "  fine: {datasets: [digits], priors: [gaussian], regularizers: [kl]}\n"
        "searches:\n"
        "  s: {benchmark: needs-mnist, prior: gaussian, regularizer: kl, space: {beta: {low: 0.1, high: 1}}, objective: reconstruction.mse}\n"
    )
    path = write(tmp_path, text)
    assert main(["run", str(path), "-b", "needs-mnist", "--dry-run"]) == 2
    dry_run = capsys.readouterr().err
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == dry_run, (captured.err, dry_run)  # once, though the search needs the same files
    error, fix = one_error(captured.err)
    assert error.startswith(f"error: {path}: benchmarks.needs-mnist.datasets.mnist: ") and "missing" in error
    assert fix is not None and "download: true" in fix
    assert captured.out.splitlines() == ["fine: ok, 1 cells (0 skipped)"]


def test_validate_config_only_skips_the_data_checks_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "benchmarks:\n" + needs_missing_mnist(tmp_path))
    assert main(["validate", str(path), "--config-only"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    unchecked = "(config only: data files and weights not checked)"
    assert captured.out.splitlines() == [f"needs-mnist: ok, 1 cells (0 skipped) {unchecked}"]
