"""``harness new-plugin``: write a plugin package that installs and passes its own contract tests unmodified.

The package has a pyproject declaring the ``harness`` entry point, one module with a small working plugin of the
chosen kind (a starting point to replace with yours), a test module that runs the kind's suite from
``harness.testing``, and a README saying how to install, test, use and publish it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from string import Template

from harness.errors import ConfigError

KINDS = ("prior", "regularizer", "evaluator", "dataset")
#: The YAML key: lowercase letters and digits, words joined by single '-' or '_'.
NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A $kind for prior-harness: $name"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["prior-harness>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# prior-harness loads every module of this entry-point group; `$name` under ${kind}s: in benchmarks.yaml is the
# class attribute `name`, not this key.
[project.entry-points.harness]
$name = "$module"

[tool.setuptools]
py-modules = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# $dist

A $kind for prior-harness, written by `harness new-plugin`.
Its code is a small working example: replace it with yours and keep the tests passing.

```bash
pip install -e .              # registers the entry point: `harness list` now shows the $kind '$name'
python -m pytest              # the contract suite of harness.testing, plus your own tests
```

Use it in `benchmarks.yaml`:

```yaml
$usage
```

Options are the constructor's keyword arguments, validated against its signature (or a pydantic `Params` model)
before anything trains.

## Publishing

Build and upload to PyPI (`python -m build && twine upload dist/*`); users then need only `pip install $dist`.
Keep the `harness` entry point and the class attribute `name` stable: they are what configs refer to.
"""

TESTS = '''\
"""$dist obeys prior-harness's contract for ${kind}s, and the harness finds it once installed."""

import pytest

from harness.testing import ${suite}, load_plugin
from $module import $cls


class Test$cls($suite):
    @pytest.fixture
    def $kind(self):
        return $construct


def test_the_harness_finds_it_through_its_entry_point():
    assert load_plugin("$kind", "$name") is $cls
'''

PRIOR = '''\
"""$dist: a prior for prior-harness.

A learned diagonal Gaussian N(loc, diag(scale²)): replace it with your prior and keep the tests passing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness import Prior, hookimpl


class $cls(Prior):
    """N(loc, diag(scale²)) with loc and log-scale fitted to the codes by ``fit_loss`` (the default: -mean log p).

    Invertible, so the harness also measures in Z_0: ``to_base`` maps z to (z - loc) / scale, which is N(0, I).
    """

    name = "$name"
    invertible = True

    def __init__(self, latent_dim: int, init_scale: float = 1.0) -> None:
        super().__init__()
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.full((latent_dim,), math.log(init_scale)))

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        z0 = self.to_base(z)
        return -0.5 * (z0.pow(2) + math.log(2 * math.pi)).sum(dim=-1) - self.log_scale.sum()

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return self.from_base(torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype))

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return (z - self.loc) * torch.exp(-self.log_scale)

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.loc + z0 * torch.exp(self.log_scale)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register($cls)
'''

REGULARIZER = '''\
"""$dist: a latent regularizer for prior-harness.

An L2 pull of each code towards the prior's samples: replace it with your regularizer and keep the tests passing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness import GaussianPosterior, Prior, Regularizer, hookimpl


class $cls(Regularizer):
    """R(z) = mean over ``samples`` draws s from the prior of ‖z - s‖² / 2, per row, weighted by β.

    Needs only ``prior.sample``, so it works with priors without a density too.
    """

    name = "$name"
    uses_beta = True
    requires_density = False

    def __init__(self, samples: int = 64) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.samples = samples

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            drawn = prior.sample(self.samples).to(z)
        return 0.5 * (z[:, None, :] - drawn[None]).pow(2).sum(dim=-1).mean(dim=1)


@hookimpl
def harness_register_regularizers(register: Callable[[type[Regularizer]], None]) -> None:
    register($cls)
'''

EVALUATOR = '''\
"""$dist: an evaluator for prior-harness.

Active units (Burda et al. 2016): replace it with your metric and keep the tests passing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from harness import EvalData, Evaluator, TrainedModel, hookimpl


class $cls(Evaluator):
    """``$name.active_units``: latent dimensions whose posterior mean varies over the test split by more than
    ``threshold`` (variance); the rest carry no information about the input."""

    name = "$name"
    metrics = {"active_units": "max"}

    def __init__(self, threshold: float = 0.01, batch_size: int = 500) -> None:
        if threshold <= 0 or batch_size < 1:
            raise ValueError("threshold must be > 0 and batch_size >= 1")
        self.threshold = threshold
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        means = torch.cat([model.encode(x).mean for x in data.test.x.split(self.batch_size)])
        return {"active_units": float((means.var(dim=0) > self.threshold).sum())}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register($cls)
'''

DATASET = '''\
"""$dist: a dataset for prior-harness.

Gaussian blobs in 2-D: replace them with your data (loaded from a local root, see DatasetUnavailable) and keep the
tests passing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from harness import Dataset, DataSplit, hookimpl


class $cls(Dataset):
    """``blobs`` Gaussian blobs (std 0.5) evenly spaced on a circle of radius 3: float32 [N, 2] points labelled by
    blob. Each split is drawn from its own fixed seed, so every run sees the same points."""

    name = "$name"

    def __init__(self, n_train: int = 2000, n_test: int = 500, blobs: int = 3) -> None:
        if n_train < 1 or n_test < 1 or blobs < 1:
            raise ValueError("n_train, n_test and blobs must be >= 1")
        self.sizes = {"train": n_train, "test": n_test}
        self.blobs = blobs

    def load(self, split: Literal["train", "test"]) -> DataSplit:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = self.sizes[split]
        labels = torch.randint(0, self.blobs, (n,), generator=g)
        angles = 2 * math.pi * labels / self.blobs
        centres = 3 * torch.stack([angles.cos(), angles.sin()], dim=1)
        points = centres + 0.5 * torch.randn(n, 2, generator=g)
        return DataSplit(points.float(), labels, "class", tuple(f"blob{k}" for k in range(self.blobs)))


@hookimpl
def harness_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register($cls)
'''

SOURCES = {"prior": PRIOR, "regularizer": REGULARIZER, "evaluator": EVALUATOR, "dataset": DATASET}
CONSTRUCT = {"prior": "$cls(latent_dim=3)", "regularizer": "$cls()", "evaluator": "$cls()", "dataset": "$cls()"}
USAGE = {
    "prior": "priors: {$name: {init_scale: [0.5, 2.0]}}     # a list-valued prior option is a grid axis",
    "regularizer": "regularizers: {$name: {samples: 64}}",
    "evaluator": "evaluators: {$name: {}}\nprimary_metric: $name.active_units",
    "dataset": "datasets: {$name: {blobs: 4}}          # vectors: use model.architecture: mlp",
}


def names(name: str, kind: str) -> dict[str, str]:
    """The template variables: the YAML name, distribution, module and class names."""
    words = re.split(r"[-_]", name)
    return {
        "name": name,
        "kind": kind,
        "dist": f"harness-{kind}-{name}",
        "module": f"harness_{kind}_{name.replace('-', '_')}",
        "cls": "".join(w.capitalize() for w in words) + kind.capitalize(),
        "suite": f"{kind.capitalize()}Contract",
    }


def write_plugin(name: str, kind: str, folder: Path | None = None, taken: Iterable[str] = ()) -> Path:
    """Write the package for a ``kind`` plugin called ``name`` into ``folder`` (default ./harness-KIND-NAME).

    Raises ConfigError (exit 2) for a bad name, a name an installed plugin already has, or a non-empty folder.
    """
    if kind not in KINDS:
        raise ConfigError("--kind", f"{kind!r} is not a plugin kind; choose from {', '.join(KINDS)}")
    if not NAME.fullmatch(name):
        fix = "use lowercase letters and digits, words joined by - or _ (my-prior)"
        raise ConfigError("NAME", f"{name!r} is not a plugin name", fix)
    if name in taken:
        raise ConfigError("NAME", f"an installed plugin already provides the {kind} {name!r}", "choose another name")
    values = names(name, kind)
    folder = Path(folder) if folder is not None else Path.cwd() / values["dist"]
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError("--dir", f"{folder} already exists and is not empty", "choose another --dir")

    def fill(template: str) -> str:
        return Template(template).substitute(values)

    values["construct"] = fill(CONSTRUCT[kind])
    values["usage"] = fill(USAGE[kind])
    files = {
        "pyproject.toml": fill(PYPROJECT),
        "README.md": fill(README),
        f"{values['module']}.py": fill(SOURCES[kind]),
        f"tests/test_{values['module']}.py": fill(TESTS),
    }
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
