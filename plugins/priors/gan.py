"""A GAN prior (Prior-AAE, paper §2.1 and §3): a generator fitted adversarially to the encoder's codes.

The generator maps noise to Z_T; the prior's own latent discriminator tells the codes ("real") from generator
samples ("fake"). The game is the non-saturating logistic GAN with an R1 penalty on the codes (Mescheder et al.
2018), shared with the adversarial regularizer through ``harness_plugins.adversarial_common``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import Prior, hookimpl
from harness.api import checked_options
from harness_plugins.adversarial_common import (
    DiscriminatorSteps,
    HiddenLayers,
    HiddenWidth,
    LatentDiscriminator,
    LearningRate,
    R1Weight,
    fooling_loss,
    mlp,
)


class GANPrior(Prior):
    """pθ = G_θ(ε), ε ~ N(0, I_noise_dim). No density (``gan × kl`` is skipped), no inverse (no Z_0 metrics).

    Who plays against whom: θ is the generator only (``fit_parameters``). Each ``fit_loss(z)`` first steps the
    prior's own discriminator D_θ ``d_steps`` times with its own Adam (lr ``lr``, betas 0.5/0.999) on codes z
    ("real") vs detached generator samples ("fake"), loss softplus(-D(z)) + softplus(D(G(ε))) + r1/2·‖∇_z D(z)‖²;
    it then returns the generator's non-saturating loss mean(-log D_θ(G(ε))), which the harness minimises over θ
    with its Adam at ``prior_lr``, never weighted by β. The encoder never sees D_θ.

    - ``gan × none`` is the paper's Prior-AAE: an unregularised autoencoder plus a GAN learning its code
      distribution alongside.
    - ``gan × adversarial`` adds the regularizer's separate discriminator D_R, which tells generator samples
      ("real") from codes ("fake") and pushes the encoder, weighted by β, towards the generator, while D_θ pulls
      the generator towards the codes: the β-weighted AAE whose prior is learned.

    ``r1`` is γ of Mescheder et al.; 1.0 suits codes of order-one scale. The defaults (D at lr 1e-3, 3 D steps per
    generator step) keep D ahead of the generator in a short run: on the quick benchmark (digits, 30 epochs, ~360
    generator steps) D at lr 2e-4 with 1 step let the generator collapse onto 2-4 of the 10 digits (classifier FID
    1,170-1,450); lr 1e-3 with 3 steps covers all 10 in both seeds (FID 80-98, RealNVP 53-58).

    Coverage, measured (quick benchmark's ``gan × none``, seeds 0-2, classifier recall of Kynkäänniemi et al.;
    ``realnvp × none`` 0.70, 0.74, 0.79): every variant covers all 10 digits, but recall stays 0.46-0.76 and
    varies as much between seeds as between variants. hidden 64, 3 D steps: 0.56, 0.65, 0.55; 5 D steps and
    ``noise_dim`` 32: 0.76, 0.65, 0.61 (the quick benchmark's choice; also the best FID, 65-77); hidden 128:
    0.56-0.70; ``train.prior_steps`` 3 or 5 (more generator steps per autoencoder step): 0.46-0.61, sharper but
    less diverse, the GAN's usual trade; ``minibatch_std`` (Karras et al. 2018): 0.48-0.66; ``r1`` 0.1: 0.52-0.63.
    ``minibatch_std`` stays an option, off by default: it did not help here.

    In eval mode (or without gradients) ``fit_loss`` only scores the generator and leaves D_θ alone. D_θ's Adam state is checkpointed through
    ``get_extra_state`` of the discriminator submodule.
    """

    name = "gan"
    has_density = False
    invertible = False
    unconditional_reason = "its generator and discriminator take no condition yet (a conditional GAN prior is future work)"

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        hidden: HiddenWidth = 128,
        layers: HiddenLayers = 2,
        noise_dim: Annotated[int, Field(ge=1, description="null is latent_dim")] | None = None,
        lr: LearningRate = 1e-3,
        r1: R1Weight = 1.0,
        d_steps: DiscriminatorSteps = 3,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.noise_dim = latent_dim if noise_dim is None else noise_dim
        self.d_steps = d_steps
        self.generator = mlp(self.noise_dim, hidden, layers, latent_dim)
        self.discriminator = LatentDiscriminator(latent_dim, hidden, layers, lr, r1, minibatch_std)

    def _generate(self, n: int) -> Tensor:
        return self.generator(torch.randn(n, self.noise_dim, device=self.device, dtype=self.dtype))

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return self._generate(n)

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.training and torch.is_grad_enabled():
            for _ in range(self.d_steps):
                with torch.no_grad():
                    fake = self._generate(z.shape[0])
                self.discriminator.step(real=z, fake=fake)
        return fooling_loss(self.discriminator(self._generate(z.shape[0]))).mean()

    def fit_parameters(self) -> list[nn.Parameter]:
        """The generator only: the discriminator is stepped by its own optimizer inside ``fit_loss``."""
        return [p for p in self.generator.parameters() if p.requires_grad]


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(GANPrior)
