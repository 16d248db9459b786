"""What the contract suites share: parametrisations, tensor checks, the stand-in priors, fitting helpers."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Literal

import pytest
import torch
from torch import Tensor

from harness.api import GaussianPosterior, Prior, standard_normal_log_prob


_DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


def _check_tensor(t: Any, what: str, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> None:
    assert isinstance(t, Tensor), f"{what} returned {type(t).__name__}, not a Tensor"
    assert tuple(t.shape) == shape, f"{what} has shape {list(t.shape)}, expected {list(shape)}"
    assert t.dtype == dtype, f"{what} has dtype {t.dtype}, expected {dtype} (the prior's, or the input's)"
    assert t.device.type == torch.device(device).type, f"{what} is on {t.device}, expected {device}"
    assert bool(torch.isfinite(t).all()), f"{what} has non-finite values: {t}"


def _reloaded(state: Mapping[str, Any]) -> Any:
    """``state`` after torch.save and torch.load(weights_only=True): how the harness's checkpoints restore it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _rows(cond: Tensor | None, n: int) -> Tensor | None:
    """``n`` conditions cycled from the ``cond`` fixture's rows (None for an unconditional prior)."""
    return None if cond is None else cond[torch.arange(n, device=cond.device) % len(cond)]


def _same(cond: Tensor | None, n: int, row: int = 0) -> Tensor | None:
    """One condition repeated ``n`` times: a density for a fixed condition."""
    return None if cond is None else cond[row : row + 1].expand(n, *cond.shape[1:])


class _StandardNormal(Prior):
    """N(0, I), invertible through the identity: the default prior the regularizer and evaluator suites use."""

    name = "contract-standard-normal"
    invertible = True

    def __init__(self, latent_dim: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor:
        return posterior.kl_to_standard_normal()

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return z0


class _NoDensity(_StandardNormal):
    name = "contract-no-density"
    has_density = False
    invertible = False


class _PostHoc(_StandardNormal):
    name = "contract-post-hoc"
    post_hoc = True


def load_plugin(kind: Literal["prior", "regularizer", "evaluator", "dataset", "architecture"], name: str) -> type:
    """The class the harness finds as ``kind`` ``name`` through the ``harness`` entry points.

    Checks that an installed package registers what it should; fails naming the plugins that did not load.
    """
    from harness.registry import load_registry

    registry = load_registry()
    found = registry.plugins[kind].get(name)
    broken = "; ".join(f"{b.entry_point} ({b.distribution}): {b.error}" for b in registry.broken) or "none"
    assert found is not None, (
        f"no {kind} {name!r} among the installed plugins (found: {', '.join(registry.names(kind))}; broken: {broken})"
    )
    return found.cls
