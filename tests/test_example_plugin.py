"""The example third-party package (examples/harness-prior-laplace) installs and passes its own tests, which
include the contract suite and a tiny benchmark run with its prior.

It is installed (editable, offline) from a copy into a throwaway virtual environment that sees this one's packages,
so nothing reaches the environment running the tests or the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from test_scaffold import make_venv, pip_install, run

EXAMPLE = Path(__file__).parents[1] / "examples" / "harness-prior-laplace"


def test_the_example_package_installs_and_passes_its_tests_and_tiny_benchmark(tmp_path):
    package = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    python = make_venv(tmp_path / "venv")
    pip_install(python, package)
    tests = run(python, "-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for test in ("test_the_harness_finds_it_through_its_entry_point",
                 "test_the_tiny_benchmark_trains_and_evaluates_every_laplace_cell",
                 "TestLearnedLaplace::test_samples_match_the_density"):
        assert f"tests/test_laplace.py::{test} PASSED" in tests.stdout
