"""Shared test helpers: tiny benchmark configs and a plugin registry."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from harness.registry import Registry, load_registry

#: A benchmark small enough to train in about a second on a CPU core.
TINY: dict[str, Any] = {
    "datasets": {"digits": {}},
    "model": {"architecture": "mlp", "latent_dim": 4, "likelihood": "gaussian", "gamma": 0.05,
              "architecture_options": {"hidden": 32, "layers": 1}},
    "priors": {"gaussian": {}},
    "regularizers": ["kl", "none"],
    "beta": [1.0],
    "seeds": [0],
    "train": {"epochs": 2, "batch_size": 256, "lr": 0.003},
    "evaluators": {"reconstruction": {}},
    "primary_metric": "reconstruction.mse",
    "sample_grid": 16,
}


def write_config(path: Path, **overrides: Any) -> Path:
    """Write a one-benchmark (``tiny``) config with ``overrides`` applied to the benchmark."""
    bench = {**TINY, "default": True, **overrides}
    path.write_text(yaml.safe_dump({"benchmarks": {"tiny": bench}}, sort_keys=False), encoding="utf-8")
    return path


def perturbed(prior: torch.nn.Module, scale: float = 0.2) -> Any:
    """Noise on every parameter, so a flow's zero-initialised layers are no longer the identity."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(scale * torch.randn_like(p))
    return prior


def make_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """A real installed distribution: a module plus a dist-info folder declaring the entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[harness]\n{module} = {module}\n", encoding="utf-8")


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tests train tiny models: one torch thread is faster than two and gives one summation order.

    On a machine whose cores are busy, two threads make small convolutions several times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
