"""The standard normal prior N(0, I), the baseline every learned prior is compared against, and its conditional
form N(μ(y), I) (the prior p(z|y) of Esser et al.'s Variational U-Net, §6 of the paper)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness import GaussianPosterior, Prior, hookimpl, standard_normal_log_prob
from harness_plugins.conditioning import ConditionEncoder

#: Width of the condition features μ(y) is read from.
CONDITION_FEATURES = 128


class GaussianPrior(Prior):
    """N(0, I) in Z_T: no parameters, Z_0 and Z_T coincide (the identity map).

    Conditional (built with ``condition_shape`` for data with a condition y): N(μ(y), I), with μ a condition network
    and a linear map whose zero initialisation starts it at N(0, I). μ is θ: fitted by the prior's loss (the
    likelihood of the detached codes), while the KL regularizer is taken against N(μ(y), I) in closed form.
    """

    name = "gaussian"
    invertible = True
    conditional = True
    packable = True

    def __init__(self, latent_dim: int, condition_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.mean_net: nn.Module | None = None
        if condition_shape is not None:
            last = nn.Linear(CONDITION_FEATURES, latent_dim)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.mean_net = nn.Sequential(ConditionEncoder(tuple(condition_shape), CONDITION_FEATURES), last)

    def mean(self, cond: Tensor | None, like: Tensor) -> Tensor:
        """μ(y) [B, D] for a conditional prior; a broadcastable zero for N(0, I) (``cond`` ignored)."""
        if self.mean_net is None:
            return like.new_zeros(())
        if cond is None:
            raise ValueError("this gaussian prior is conditional (N(μ(y), I)) and needs cond")
        return self.mean_net(cond).to(like.dtype)

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return standard_normal_log_prob(z - self.mean(cond, z))

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        eps = torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        return eps + self.mean(cond, eps)

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor:
        if self.mean_net is None:
            return posterior.kl_to_standard_normal()
        shifted = GaussianPosterior(posterior.mean - self.mean(cond, posterior.mean), posterior.logvar)
        return shifted.kl_to_standard_normal()

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z - self.mean(cond, z)

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return z0 + self.mean(cond, z0)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(GaussianPrior)
