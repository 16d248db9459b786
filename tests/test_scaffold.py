"""``harness new-plugin`` writes packages that install and pass their own tests unmodified.

Packages are installed (editable, offline) into a throwaway virtual environment that sees this one's packages, so
nothing installed here reaches the environment running the tests.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools

import harness
from harness.cli import main
from harness.scaffold import KINDS, names


def make_venv(folder: Path) -> Path:
    """A virtual environment on top of this one; returns its python.

    Not ``--system-site-packages``: from inside a venv that means the base interpreter's packages, not this venv's
    (where pip put the harness, pytest and a setuptools that builds editables). A .pth file instead adds this
    environment's own site folders after the new one's, through ``site.addsitedir`` so their .pth files (editable
    installs) are processed too, whether this environment is a venv or the system python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if d in sys.path]
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dict.fromkeys(ours))
    (Path(purelib) / "_outer_environment.pth").write_text(lines, encoding="utf-8")
    return python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # One thread: the tests' models are tiny and the cores are shared.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def pip_install(python: Path, *packages: Path) -> None:
    editable = [arg for p in packages for arg in ("-e", str(p))]
    done = run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", *editable,
               cwd=packages[0].parent)
    assert done.returncode == 0, done.stderr


def test_the_throwaway_venv_imports_this_environment_s_packages_not_the_base_interpreter_s(tmp_path):
    python = make_venv(tmp_path / "venv")
    where = run(python, "-c", "import harness, pytest, setuptools; print(harness.__file__, pytest.__file__, "
                "setuptools.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    # setuptools: what pip_install builds the editables with (--no-build-isolation).
    assert where.stdout.split() == [harness.__file__, pytest.__file__, setuptools.__file__]


def test_new_packages_of_every_kind_install_and_pass_their_own_tests(tmp_path):
    folders = {kind: tmp_path / f"harness-{kind}-mything" for kind in KINDS}
    for kind, folder in folders.items():
        assert main(["new-plugin", "mything", "--kind", kind, "--dir", str(folder)]) == 0
    module = names("mything", "prior")["module"]
    assert sorted(str(p.relative_to(folders["prior"])) for p in folders["prior"].rglob("*")) == [
        "README.md", f"{module}.py", "pyproject.toml", "tests", f"tests/test_{module}.py",
    ]  # fmt: skip
    python = make_venv(tmp_path / "venv")
    pip_install(python, *folders.values())
    # Each package's tests as written, in one session (starting Python and loading the plugins once).
    tests = run(python, "-m", "pytest", "-v", "-p", "no:cacheprovider", *map(str, folders.values()), cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for kind in KINDS:
        entry = f"tests/test_{names('mything', kind)['module']}.py::test_the_harness_finds_it_through_its_entry_point"
        assert f"{entry} PASSED" in tests.stdout
    assert "FAILED" not in tests.stdout and "ERROR" not in tests.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new-plugin", "My Prior", "--kind", "prior"], "error: NAME: 'My Prior' is not a plugin name"),
        (["new-plugin", "9lives", "--kind", "dataset"], "error: NAME: '9lives' is not a plugin name"),
        (["new-plugin", "ok", "--kind", "flow"], "error: harness new-plugin: argument --kind: invalid choice: 'flow'"),
        (["new-plugin", "ok"], "error: harness new-plugin: the following arguments are required: --kind"),
        (["new-plugin", "gaussian", "--kind", "prior"], "error: NAME: an installed plugin already provides the prior"),
    ],
)
def test_a_bad_name_or_kind_is_one_error_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("error:") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["new-plugin", "x", "--kind", "prior", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --dir: {tmp_path} already exists and is not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
