"""The fixed standard normal prior N(0, I): the baseline every learned prior is compared against."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness import GaussianPosterior, Prior, hookimpl, standard_normal_log_prob


class GaussianPrior(Prior):
    """N(0, I) in Z_T. It has no parameters; Z_0 and Z_T coincide (the identity map)."""

    name = "gaussian"
    invertible = True

    def __init__(self, latent_dim: int) -> None:
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


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(GaussianPrior)
