"""The RealNVP flow fitted after training to the frozen codes: the control for the jointly trained flow prior.

A jointly trained flow (``realnvp``) chases codes that move under it for the whole run. Fitting the same flow
to the codes of the finished autoencoder separates the two effects the paper's β trend mixes: how good the
codes are (β's effect on the autoencoder) and how well a flow fits them (the prior's lag behind its target).
Next to the ex-post GMM (``gmm``), it makes "joint vs ex post" one axis of a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import GaussianPosterior, Prior, hookimpl, standard_normal_log_prob
from harness.api import checked_options
from harness_plugins.priors.fitting import fit_to_codes
from harness_plugins.priors.realnvp import RealNVPPrior


class RealNVPExPostPrior(RealNVPPrior):
    """``realnvp``'s flow (same ``depth``, ``hidden``, ``layers``, ``actnorm``), fitted by maximum likelihood to
    the training split's posterior means once the autoencoder has finished training.

    Until it is fitted it is N(0, I), like the ex-post GMM: ``realnvp-ex-post × kl`` trains a Gaussian VAE and
    ``realnvp-ex-post × none`` a plain autoencoder, whose codes the flow then fits. The fit runs ``steps`` Adam
    steps at ``lr`` on minibatches of ``batch_size`` codes drawn with torch's generator (seeded per cell by the
    harness). ActNorm initialises on the first minibatch of the fit, so it standardises the final codes.
    Unconditional: the fit sees codes only.
    """

    name = "realnvp-ex-post"
    post_hoc = True
    conditional = False
    unconditional_reason = "it is fitted once to the training codes, which carry no condition (use realnvp)"

    fitted: Tensor

    @checked_options
    def __init__(
        self,
        latent_dim: int,
        depth: int = 6,
        hidden: int = 128,
        layers: int = 2,
        actnorm: bool = True,
        steps: Annotated[int, Field(ge=1)] = 2000,
        lr: Annotated[float, Field(gt=0)] = 1e-3,
        batch_size: Annotated[int, Field(ge=1)] = 256,
    ) -> None:
        # depth, hidden, layers and latent_dim are checked by RealNVPPrior's constructor.
        super().__init__(latent_dim, depth=depth, hidden=hidden, layers=layers, actnorm=actnorm)
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit_parameters(self) -> list[nn.Parameter]:
        """None during training: the flow is fitted only by ``fit_post_hoc``."""
        return []

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        # Nothing to fit while the autoencoder trains; a constant keeps the harness's logs uniform.
        return z.new_zeros(())

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if not bool(self.fitted):
            return standard_normal_log_prob(z)
        return super().log_prob(z)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        if not bool(self.fitted):
            return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        return super().sample(n)

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().to_base(z) if bool(self.fitted) else z

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().from_base(z0) if bool(self.fitted) else z0

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor | None:
        if bool(self.fitted):
            return None  # a flow has no closed-form KL: the KL regularizer falls back to one sample
        return posterior.kl_to_standard_normal()

    def fit_post_hoc(self, z: Tensor) -> None:
        codes = z.detach().to(device=self.device, dtype=self.dtype)
        self.fitted.fill_(True)  # log_prob below is the flow's
        fit_to_codes(self, lambda batch: -self.log_prob(batch).mean(), codes, self.steps, self.lr, self.batch_size)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(RealNVPExPostPrior)
