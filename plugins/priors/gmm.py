"""A Gaussian mixture fitted to the trained encoder's codes: ex-post density estimation (Ghosh et al. 2020).

Not in the paper, but the strongest simple baseline in the literature: train the autoencoder (with or without
KL), then fit a full-covariance GMM to its training codes and sample from that instead of N(0, I).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from sklearn.mixture import GaussianMixture
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from harness import GaussianPosterior, Prior, hookimpl, standard_normal_log_prob
from harness.api import checked_options


class GMMPrior(Prior):
    """``components`` full-covariance Gaussians fitted by scikit-learn's EM to the training codes after training.

    Until it is fitted it is N(0, I) (so ``gmm × kl`` trains a Gaussian VAE, ``gmm × none`` a plain autoencoder).
    The fitted mixture lives in buffers, so checkpoints restore it. ``reg_covar`` is added to each covariance's
    diagonal (scikit-learn's regulariser against collapsing components).
    """

    name = "gmm"
    post_hoc = True
    #: Nothing trains in the loop (N(0, I) until fitted ex post, per member, after training).
    packable = True
    unconditional_reason = "one mixture fitted ex post to all codes; a mixture per condition needs discrete conditions"

    @checked_options
    def __init__(
        self,
        latent_dim: int,
        components: Annotated[int, Field(ge=1)] = 10,
        reg_covar: Annotated[float, Field(ge=0)] = 1e-6,
        max_iter: Annotated[int, Field(ge=1)] = 200,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.components = components
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, latent_dim))
        self.register_buffer("scale_tril", torch.eye(latent_dim).repeat(components, 1, 1))

    def _mixture(self) -> MixtureSameFamily:
        return MixtureSameFamily(Categorical(probs=self.weights), MultivariateNormal(self.means, scale_tril=self.scale_tril))

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if not bool(self.fitted):
            return standard_normal_log_prob(z)
        return self._mixture().log_prob(z)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        if not bool(self.fitted):
            return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        return self._mixture().sample((n,))

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor | None:
        if bool(self.fitted):
            return None  # no closed form against a mixture: the KL regularizer falls back to one sample
        return posterior.kl_to_standard_normal()

    def fit_post_hoc(self, z: Tensor) -> None:
        if z.shape[0] < self.components:
            raise ValueError(f"gmm: {z.shape[0]} codes cannot fit {self.components} components")
        # scikit-learn's EM is seeded from torch's generator, which the harness seeds per cell.
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        gmm = GaussianMixture(
            self.components, covariance_type="full", reg_covar=self.reg_covar, max_iter=self.max_iter, random_state=seed
        ).fit(z.detach().double().cpu().numpy())
        like = self.means
        self.weights.copy_(torch.as_tensor(gmm.weights_, dtype=like.dtype))
        self.means.copy_(torch.as_tensor(gmm.means_, dtype=like.dtype))
        self.scale_tril.copy_(torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, dtype=torch.float64)).to(like.dtype))
        self.fitted.fill_(True)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(GMMPrior)
