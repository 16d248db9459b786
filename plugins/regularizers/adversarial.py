"""The adversarial regularizer of an AAE (Makhzani et al. 2016): the encoder learns to fool a latent discriminator.

The game is the non-saturating logistic GAN with an R1 penalty on the prior samples (Mescheder et al. 2018),
shared with the ``gan`` prior through ``harness_plugins.adversarial_common``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from harness import GaussianPosterior, Prior, Regularizer, hookimpl
from harness_plugins.adversarial_common import LatentDiscriminator, check_options, fooling_loss


class AdversarialRegularizer(Regularizer):
    """R(z) = -log D_R(z) per row (non-saturating), weighted by β in L_φψ.

    Who plays against whom: the regularizer's discriminator D_R tells prior samples pθ ("real", drawn without
    gradients) from the encoder's codes ("fake"); ``update`` steps it ``d_steps`` times with its own Adam (lr
    ``lr``, betas 0.5/0.999) on softplus(-D(prior)) + softplus(D(z)) + r1/2·‖∇ D(prior)‖². ``penalty`` is the
    encoder's move: β·softplus(-D_R(z)) pushes q(z) towards pθ; the harness routes its gradient to φ only, and
    D_R's own step zeroes its gradients first, so L_φψ never moves D_R. The prior is never trained here.

    With the ``gan`` prior the generator's side of the game is the prior's fit (its own discriminator D_θ pulls
    G towards the codes, not weighted by β), so ``gan × adversarial`` is the β-weighted AAE with a learned prior
    of Prior-AAE. D_R compares marginals; it does not see ``cond``. Its input width is inferred from the first
    codes it sees; its Adam state is checkpointed with the regularizer's ``state_dict``.
    """

    name = "adversarial"
    uses_beta = True
    requires_density = False

    def __init__(self, hidden: int = 128, layers: int = 2, lr: float = 2e-4, r1: float = 1.0, d_steps: int = 1) -> None:
        super().__init__()
        check_options(hidden, layers, lr, r1, d_steps)
        self.d_steps = d_steps
        self.discriminator = LatentDiscriminator(None, hidden, layers, lr, r1)

    @classmethod
    def incompatibility(cls, prior_cls: type[Prior]) -> str | None:
        if prior_cls.post_hoc:
            return (
                f"prior {prior_cls.name!r} is fitted after training; "
                f"the {cls.name} regularizer needs a prior to play against during training"
            )
        return super().incompatibility(prior_cls)

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        return fooling_loss(self.discriminator(z))

    def update(self, z: Tensor, prior: Prior, cond: Tensor | None = None) -> Mapping[str, float]:
        logs: dict[str, float] = {}
        for _ in range(self.d_steps):
            with torch.no_grad():
                real = prior.sample(z.shape[0], cond)
            logs = self.discriminator.step(real=real, fake=z)
        return logs


@hookimpl
def harness_register_regularizers(register: Callable[[type[Regularizer]], None]) -> None:
    register(AdversarialRegularizer)
