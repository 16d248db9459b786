"""Plugins the tests register directly (``load_registry(extra_modules=[plugin_doubles])``)."""

from __future__ import annotations

import torch
from torch import Tensor

from harness import Prior, hookimpl


class PoisonablePrior(Prior):
    """N(shift, I) whose fit loss turns NaN when ``poison`` is set: a stand-in for a diverging prior.

    ``poison_from``: the first training step whose fit loss is NaN (the NaN gradient then makes ``shift`` NaN).
    ``strict``: raise ValueError once ``shift`` is not finite, as torch.distributions' argument checks do.
    """

    name = "poisonable"

    def __init__(self, latent_dim: int, poison: bool = False, poison_from: int = 1, strict: bool = False) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.poison, self.poison_from, self.strict = poison, poison_from, strict
        self.shift = torch.nn.Parameter(torch.zeros(latent_dim))
        self.steps = 0

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.strict and not bool(torch.isfinite(self.shift).all()):
            raise ValueError("Expected parameter shift to satisfy the constraint Real(), but found invalid values")
        return -0.5 * ((z - self.shift) ** 2).sum(-1)

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        self.steps += 1
        loss = -self.log_prob(z, cond).mean()
        return loss * float("nan") if self.poison and self.steps >= self.poison_from else loss

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim) + self.shift


@hookimpl
def harness_register_priors(register):
    register(PoisonablePrior)
