"""Plugins the tests register directly (``load_registry(extra_modules=[plugin_doubles])``)."""

from __future__ import annotations

import torch
from torch import Tensor

from harness import Prior, hookimpl


class PoisonablePrior(Prior):
    """N(0, I) whose fit loss is NaN when ``poison`` is set: a stand-in for a diverging prior."""

    name = "poisonable"

    def __init__(self, latent_dim: int, poison: bool = False) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.poison = poison
        self.shift = torch.nn.Parameter(torch.zeros(latent_dim))

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        value = -0.5 * ((z - self.shift) ** 2).sum(-1)
        return value * float("nan") if self.poison else value

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim) + self.shift


@hookimpl
def harness_register_priors(register):
    register(PoisonablePrior)
