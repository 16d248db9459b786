"""The two-stage VAE prior (Dai & Wipf 2019): a second VAE fitted to the first one's codes once it has trained.

Its samples are the prior's samples: u ~ N(0, I) through the second decoder (its mean plus its noise). The second VAE has a Gaussian
decoder with a learned scalar variance γ (Dai & Wipf's choice: γ → 0 lets it match the codes' manifold), and the
codes are standardised (mean and standard deviation of the training codes) before it sees them.

Its ELBO (``elbo``) bounds log p(z) from below; the exact density is intractable, so the prior declares
``has_density = False``: ``kl`` cells are skipped with that reason (a KL fed with a bound would be an upper-bound
estimate, unlike the other priors'), and ``× none`` is Dai & Wipf's setting with an unregularised first stage. Until
it is fitted it is N(0, I) (``× adversarial`` then trains an AAE whose codes the second stage fits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import GaussianPosterior, Prior, hookimpl
from harness.api import checked_options
from harness_plugins.architectures.mlp import stack
from harness_plugins.priors.fitting import fit_to_codes


class TwoStagePrior(Prior):
    """A second-stage VAE on the standardised codes: ``hidden`` × ``layers`` MLPs, fitted for ``fit_steps`` Adam steps
    at ``fit_lr`` on ``fit_batch_size`` codes per step after the first stage has trained."""

    name = "two-stage"
    has_density = False
    post_hoc = True
    unconditional_reason = "it is fitted once to the training codes, which carry no condition"

    fitted: Tensor
    centre: Tensor
    scale: Tensor

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        hidden: Annotated[int, Field(ge=1)] = 256,
        layers: Annotated[int, Field(ge=1)] = 3,
        fit_steps: Annotated[int, Field(ge=1, description="Adam steps of the second stage")] = 3000,
        fit_lr: Annotated[float, Field(gt=0)] = 1e-3,
        fit_batch_size: Annotated[int, Field(ge=1)] = 256,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = [hidden] * layers
        self.encoder = stack([latent_dim, *widths, 2 * latent_dim])
        self.decoder = stack([latent_dim, *widths, latent_dim])
        self.log_gamma = nn.Parameter(torch.zeros(()))
        self.fit_steps, self.fit_lr, self.fit_batch_size = fit_steps, fit_lr, fit_batch_size
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("centre", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def fit_parameters(self) -> list[nn.Parameter]:
        """None while the first stage trains: the second stage is fitted by ``fit_post_hoc``."""
        return []

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z.new_zeros(())

    def elbo(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The second VAE's one-sample ELBO of codes ``z`` [B, D] in their own units (a bound on log p(z)), [B]."""
        u = (z - self.centre) / self.scale
        mean, logvar = self.encoder(u).chunk(2, dim=-1)
        posterior = GaussianPosterior(mean, logvar)
        recon = self.decoder(posterior.rsample(generator))
        gamma = self.log_gamma.exp()
        log_lik = -0.5 * ((u - recon).pow(2) / gamma + self.log_gamma + math.log(2 * math.pi)).sum(dim=-1)
        # log|det| of the standardisation: the bound is on the density of z, not of u.
        return log_lik - posterior.kl_to_standard_normal() - self.scale.log().sum()

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        u = torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        if not bool(self.fitted):
            return u
        # The generative model whose density the ELBO bounds: the decoder's mean plus its noise √γ·ε. Dai & Wipf
        # sample the mean alone, the same thing once γ → 0; with γ large (codes the decoder cannot shape better
        # than the noise, e.g. Gaussian ones) the mean alone would collapse onto a point.
        noise = torch.randn_like(u) * (0.5 * self.log_gamma).exp()
        return (self.decoder(u) + noise) * self.scale + self.centre

    def fit_post_hoc(self, z: Tensor) -> None:
        codes = z.detach().to(device=self.device, dtype=self.dtype)
        self.centre.copy_(codes.mean(dim=0))
        self.scale.copy_(codes.std(dim=0).clamp_min(1e-6))
        fit_to_codes(self, lambda batch: -self.elbo(batch).mean(), codes, self.fit_steps, self.fit_lr, self.fit_batch_size)
        self.fitted.fill_(True)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(TwoStagePrior)
