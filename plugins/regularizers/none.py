"""No latent regularization: an unregularised autoencoder whose prior is fitted to its codes alongside."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from harness import GaussianPosterior, Prior, Regularizer, hookimpl


class NoRegularizer(Regularizer):
    """R = 0, so β is irrelevant: the grid makes one cell for it, not one per β."""

    name = "none"
    uses_beta = False
    packable = True

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        return z.new_zeros(z.shape[0])


@hookimpl
def harness_register_regularizers(register: Callable[[type[Regularizer]], None]) -> None:
    register(NoRegularizer)
