"""The KL regularizer of a VAE: R = log q(z|x) − log pθ(z) (closed form when the prior provides one)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from harness import GaussianPosterior, Prior, Regularizer, hookimpl


class KLRegularizer(Regularizer):
    """β·KL(q(z|x) ‖ pθ(z)). With β = 1 the harness's two updates are joint ELBO ascent.

    The single-sample estimate differentiates through the reparameterised ``z`` (φ's gradient); θ is
    routed out of this term by the harness, so β never weights the prior's fit.
    """

    name = "kl"
    requires_density = True
    packable = True

    def __init__(self, analytic: bool = True) -> None:
        super().__init__()
        #: Use the prior's closed form when it has one; false forces the single-sample estimate.
        self.analytic = analytic

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        if self.analytic:
            closed = prior.analytic_kl(posterior, cond)
            if closed is not None:
                return closed
        return posterior.log_prob(z) - prior.log_prob(z, cond)


@hookimpl
def harness_register_regularizers(register: Callable[[type[Regularizer]], None]) -> None:
    register(KLRegularizer)
