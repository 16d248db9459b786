"""Ex-post variants of the learned priors: the same density, fitted once to the finished autoencoder's codes.

``zuko-ex-post`` and ``diffusion-ex-post`` (and ``two-stage`` is ex post by construction, as Dai & Wipf fit it) take
their prior's options plus ``fit_steps``, ``fit_lr`` and ``fit_batch_size``: while the autoencoder trains they are
N(0, I) with nothing to fit (so ``× kl`` trains a Gaussian VAE and ``× none`` a plain autoencoder); after it,
``fit_post_hoc`` runs ``fit_steps`` Adam steps of the prior's own ``fit_loss`` on minibatches of the training codes.
Next to the jointly fitted prior of the same name, "joint vs ex post" is one axis of a grid (``realnvp-ex-post`` is
the same for the paper's flow, kept apart because its cells predate this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import GaussianPosterior, Prior, hookimpl, standard_normal_log_prob
from harness.api import checked_options
from harness_plugins.priors.diffusion import DiffusionPrior
from harness_plugins.priors.fitting import fit_to_codes
from harness_plugins.priors.zuko_flows import FlowName, ZukoPrior

FitSteps = Annotated[int, Field(ge=1, description="Adam steps of the ex-post fit")]
FitRate = Annotated[float, Field(gt=0, description="learning rate of the ex-post fit")]
FitBatch = Annotated[int, Field(ge=1, description="codes per step of the ex-post fit")]


class ExPostFitted:
    """Mixed in before a learned prior: N(0, I) until ``fit_post_hoc`` has fitted the prior to the codes."""

    post_hoc: ClassVar[bool] = True
    conditional: ClassVar[bool] = False
    unconditional_reason: ClassVar[str | None] = "it is fitted once to the training codes, which carry no condition"
    fitted: Tensor

    def _fit_settings(self, steps: int, lr: float, batch_size: int) -> None:
        self.fit_steps, self.fit_lr, self.fit_batch_size = steps, lr, batch_size
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))  # type: ignore[attr-defined]

    def fit_parameters(self) -> list[nn.Parameter]:
        """None while the autoencoder trains: the prior is fitted only by ``fit_post_hoc``."""
        return []

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z.new_zeros(())

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().log_prob(z) if bool(self.fitted) else standard_normal_log_prob(z)  # type: ignore[misc]

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        if bool(self.fitted):
            return super().sample(n)  # type: ignore[misc]
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)  # type: ignore[attr-defined]

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().to_base(z) if bool(self.fitted) else z  # type: ignore[misc]

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return super().from_base(z0) if bool(self.fitted) else z0  # type: ignore[misc]

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor | None:
        return None if bool(self.fitted) else posterior.kl_to_standard_normal()

    def fit_post_hoc(self, z: Tensor) -> None:
        module: Any = self
        codes = z.detach().to(device=module.device, dtype=module.dtype)
        self.fitted.fill_(True)  # from here on the prior's own density and loss
        own_loss = super().fit_loss  # type: ignore[misc]
        fit_to_codes(module, own_loss, codes, self.fit_steps, self.fit_lr, self.fit_batch_size)


class ZukoExPostPrior(ExPostFitted, ZukoPrior):
    """``zuko``'s flow fitted ex post (see the module docstring)."""

    name = "zuko-ex-post"

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        flow: FlowName = "nsf",
        transforms: Annotated[int, Field(ge=1)] = 3,
        hidden: Annotated[int, Field(ge=1)] = 64,
        layers: Annotated[int, Field(ge=1)] = 2,
        standardize: bool = True,
        options: dict[str, Any] = {},  # noqa: B006 - read, never mutated
        fit_steps: FitSteps = 2000,
        fit_lr: FitRate = 1e-3,
        fit_batch_size: FitBatch = 256,
    ) -> None:
        ZukoPrior.__init__(self, latent_dim, flow, transforms, hidden, layers, standardize, options)
        self._fit_settings(fit_steps, fit_lr, fit_batch_size)


class DiffusionExPostPrior(ExPostFitted, DiffusionPrior):
    """``diffusion``'s DDPM fitted ex post (see the module docstring)."""

    name = "diffusion-ex-post"

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        steps: Annotated[int, Field(ge=2)] = 100,
        hidden: Annotated[int, Field(ge=1)] = 128,
        layers: Annotated[int, Field(ge=1)] = 3,
        standardize: bool = True,
        fit_steps: FitSteps = 2000,
        fit_lr: FitRate = 1e-3,
        fit_batch_size: FitBatch = 256,
    ) -> None:
        DiffusionPrior.__init__(self, latent_dim, steps, hidden, layers, standardize)
        self._fit_settings(fit_steps, fit_lr, fit_batch_size)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(ZukoExPostPrior)
    register(DiffusionExPostPrior)
