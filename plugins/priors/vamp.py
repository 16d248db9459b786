"""VampPrior (Tomczak & Welling 2018): a mixture of the encoder's posteriors at K learned pseudo-inputs,
pθ(z) = (1/K) Σ_k q_φ(z | u_k).

It is the one prior that depends on the encoder. How it fits the contract: the harness hands it the encoder (the
optional ``bind_encoder(encoder, data_shape)`` hook, called when a cell's model is built), which it keeps as a
reference, not a submodule: the encoder stays φ, checkpointed and optimised with the autoencoder. θ is the pseudo-
inputs, shaped like the data. The two objectives then mean: L_θ (``fit_loss``, −log pθ of the detached codes) moves
only the pseudo-inputs; β·KL in L_φψ reaches the encoder twice, through q(z|x) and through the mixture's
components, as in the paper's joint ELBO. Without a bound encoder the prior cannot be used (it says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import Prior, hookimpl
from harness.api import checked_options


class VampPrior(Prior):
    """``components`` pseudo-inputs u_k (initialised uniform in [0, 1], the range images are fed in); the mixture of
    q(z | u_k). No closed-form KL: the ``kl`` regularizer uses its one-sample estimate."""

    name = "vamp"

    @checked_options
    def __init__(
        self, latent_dim: Annotated[int, Field(ge=1)], components: Annotated[int, Field(ge=1)] = 100
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.components = components
        self.pseudo_inputs: nn.Parameter | None = None
        # A tuple, so nn.Module does not register the encoder as part of the prior.
        self._encoder: tuple[nn.Module, ...] = ()

    def bind_encoder(self, encoder: nn.Module, data_shape: tuple[int, ...]) -> None:
        """Called by the harness before training: the encoder whose posteriors make the mixture, and the data shape."""
        self._encoder = (encoder,)
        if self.pseudo_inputs is None:
            generator = torch.Generator().manual_seed(0)
            self.pseudo_inputs = nn.Parameter(torch.rand(self.components, *data_shape, generator=generator))

    def _components(self, frozen: bool = False) -> tuple[Tensor, Tensor]:
        """Means and log-variances of q(z | u_k), [K, D] each, in the prior's dtype. ``frozen``: through a copy of
        the encoder's weights, so the graph reaches the pseudo-inputs only."""
        if not self._encoder or self.pseudo_inputs is None:
            raise RuntimeError("prior 'vamp' has no encoder: the harness binds one with bind_encoder before training")
        (encoder,) = self._encoder
        weight = next(encoder.parameters())
        inputs = self.pseudo_inputs.to(dtype=weight.dtype, device=weight.device)
        if frozen:
            # Copies, not views: the harness steps the encoder before it backpropagates L_θ, and a view would share
            # the version counter that step bumps.
            weights = {name: p.detach().clone() for name, p in encoder.named_parameters()}
            h = torch.func.functional_call(encoder, weights, (inputs,))
        else:
            h = encoder(inputs)
        mean, logvar = h.to(self.pseudo_inputs.dtype).chunk(2, dim=-1)
        return mean, logvar

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self._mixture_log_prob(z, *self._components())

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """−mean log pθ(z) with the encoder's weights held fixed: L_θ moves the pseudo-inputs only."""
        return -self._mixture_log_prob(z, *self._components(frozen=True)).mean()

    def _mixture_log_prob(self, z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
        diff = z[:, None, :] - mean[None].to(z.dtype)
        logvar = logvar[None].to(z.dtype)
        per_component = -0.5 * (diff.pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)
        return torch.logsumexp(per_component, dim=1) - math.log(self.components)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        mean, logvar = self._components()
        k = torch.randint(0, self.components, (n,), device=mean.device)
        eps = torch.randn(n, self.latent_dim, device=mean.device, dtype=mean.dtype)
        return (mean[k] + torch.exp(0.5 * logvar[k]) * eps).to(self.dtype)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(VampPrior)
