"""The adversarial regularizer of an AAE (Makhzani et al. 2016): the encoder learns to fool a latent discriminator.

The game is the non-saturating logistic GAN with an R1 penalty on the prior samples (Mescheder et al. 2018),
shared with the ``gan`` prior through ``harness_plugins.adversarial_common``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from harness import GaussianPosterior, Prior, Regularizer, hookimpl
from harness.model.likelihoods import Likelihood
from harness.api import checked_options
from harness_plugins.adversarial_common import (
    DiscriminatorSteps,
    HiddenLayers,
    HiddenWidth,
    LatentDiscriminator,
    LearningRate,
    R1Weight,
    fooling_loss,
)


#: The units β is stated in (see ``AdversarialRegularizer``).
SCALES = ("squared_error", "data_dims", "none")


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

    Units (``scale``). A per-row logistic loss is ~1 nat, while the reconstruction NLL it is added to is the
    summed squared error times 1/(2γ) (784 pixels at 1/(2γ) = 50 is ~10³ nats), so an unscaled fooling loss
    leaves the AAE unregularised at β = 1.

    - ``squared_error`` (the default): the fooling loss is multiplied by the likelihood's 1/(2γ)
      (``Likelihood.squared_error_weight``, read each step, so a learned γ is followed; 1 for Bernoulli). The
      objective is then (‖x − x̂‖² + β·R)/(2γ) + const: WAE-GAN's (Tolstikhin et al. 2018) with λ = β, the
      penalty in the units of the squared error it is traded against.
    - ``data_dims``: multiplied by the number of data dimensions D (β = 1 weighs one nat of fooling per pixel).
      Measured too strong for β to order anything above 0.1: Fashion-MNIST MLP, 10 epochs, 3 seeds, MMD² of test
      codes to N(0, I) 0.166, 0.021, 0.005, 0.015, 0.022 at β = 0, 0.01, 0.1, 0.5, 1. Once the fooling gradient
      dominates the encoder's, Adam moves the codes a full step along the critic's noise every step, and the
      codes' fit gets worse, not better, as β grows (a faster critic, lr 1e-3 or 10 steps, made it worse again:
      0.043-0.055 at β = 1).
    - ``none``: the old, unscaled per-row loss (β weighs one nat per image).

    With ``squared_error`` at γ = 0.01 (a weight of 50) the same model, seed 0, gave MMD² 0.125, 0.034, 0.0034,
    0.0029 at β = 0.01, 0.1, 0.5, 1 (the KL VAE at β = 1: 0.025).

    The likelihood and D reach the regularizer through ``bind_likelihood`` and ``bind_data_shape``, optional hooks
    the harness calls after construction (``harness.model.train.build_model``) on any regularizer that defines them;
    third-party regularizers without them are untouched and the plugin option contract (``HARNESS_SUPPLIED``) is
    unchanged. Until they are called (a regularizer built by hand outside the harness) both weights count as 1.

    ``d_steps`` defaults to 5: with a scaled penalty the encoder moves fast against the prior, and one
    discriminator step per encoder step lost the game (Fashion-MNIST MLP, 790 steps, ``data_dims``, β = 1: MMD²
    0.131 with d_steps = 1, 0.014 with d_steps = 5).
    """

    name = "adversarial"
    uses_beta = True
    requires_density = False

    @checked_options
    def __init__(
        self,
        hidden: HiddenWidth = 128,
        layers: HiddenLayers = 2,
        lr: LearningRate = 2e-4,
        r1: R1Weight = 1.0,
        d_steps: DiscriminatorSteps = 5,
        scale: Literal["squared_error", "data_dims", "none"] = "squared_error",
    ) -> None:
        super().__init__()
        # A choice, not a range: pydantic checks it for YAML, this for a regularizer built by hand.
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")
        self.d_steps = d_steps
        self.scale = scale
        #: Number of data dimensions D, set by ``bind_data_shape``; 1 until then.
        self.data_dims = 1
        #: The likelihood whose 1/(2γ) ``squared_error`` follows, set by ``bind_likelihood``; None until then.
        self._likelihood: Likelihood | None = None
        self.discriminator = LatentDiscriminator(None, hidden, layers, lr, r1)

    def bind_data_shape(self, data_shape: tuple[int, ...]) -> None:
        """Called by the harness with the shape of one example, so the penalty can count data dimensions."""
        self.data_dims = math.prod(data_shape)

    def bind_likelihood(self, likelihood: Likelihood) -> None:
        """Called by the harness with the cell's likelihood, so the penalty can be stated in its units."""
        # Not a submodule: the likelihood's parameters belong to ψ, and the regularizer's checkpoint must not hold them.
        object.__setattr__(self, "_likelihood", likelihood)

    def weight(self) -> float:
        """What multiplies the per-row fooling loss (see ``scale``)."""
        if self.scale == "squared_error":
            return 1.0 if self._likelihood is None else self._likelihood.squared_error_weight()
        return float(self.data_dims) if self.scale == "data_dims" else 1.0

    @classmethod
    def incompatibility(cls, prior_cls: type[Prior]) -> str | None:
        if prior_cls.post_hoc:
            return (
                f"prior {prior_cls.name!r} is fitted after training; "
                f"the {cls.name} regularizer needs a prior to play against during training"
            )
        return super().incompatibility(prior_cls)

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        return fooling_loss(self.discriminator(z)) * self.weight()

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
