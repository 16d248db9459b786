"""A latent diffusion prior (Ho et al. 2020's DDPM on the codes, as in Wehenkel & Louppe 2021 and LSGM's latent prior).

The codes are standardised (an ActNorm layer set from the first training batch and fixed after it, so codes that
drift far during joint training leave it off-centre), noised as
u_t = √ᾱ_t·u + √(1 − ᾱ_t)·ε over ``steps`` steps of a linear β schedule, and a small MLP ε_θ(u_t, t) learns the noise
by denoising score matching (``fit_loss``: E‖ε − ε_θ(u_t, t)‖², t uniform). Sampling runs the ``steps`` ancestral
steps back from N(0, I).

No density: the DDPM's ELBO bounds log p(z) from below, so a KL regularizer fed with it would estimate an upper
bound of the KL, a penalty of another kind than the other priors' exact one; rather than mix the two in one column,
the prior declares ``has_density = False``, ``kl`` cells are skipped with that reason, and it is used with ``none``
(fitted jointly to an autoencoder's codes, the paper's L_θ) or ``adversarial``. ``prior_fit`` reports its MMD.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness import Prior, hookimpl
from harness.api import checked_options
from harness_plugins.architectures.mlp import stack
from harness_plugins.conditioning import ConditionEncoder, condition_features
from harness_plugins.priors.realnvp import ActNorm

#: The linear β schedule's ends for 1000 steps (Ho et al.), rescaled to ``steps`` so ᾱ_T is about the same.
BETA_START, BETA_END, REFERENCE_STEPS = 1e-4, 0.02, 1000
#: Width of the sinusoidal time embedding and of the condition features.
TIME_FEATURES = 32
CONTEXT_FEATURES = 64


def noise_schedule(steps: int) -> Tensor:
    """β_1..β_T, float64: Ho et al.'s linear schedule stretched to ``steps`` steps."""
    scale = REFERENCE_STEPS / steps
    return torch.linspace(BETA_START * scale, min(BETA_END * scale, 0.999), steps, dtype=torch.float64)


def time_embedding(t: Tensor, steps: int) -> Tensor:
    """Sinusoidal features of the step t ∈ {0, .., steps − 1} (Vaswani et al.), [B, TIME_FEATURES]."""
    half = TIME_FEATURES // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = (t.float() / steps)[:, None] * 1000.0 * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class DiffusionPrior(Prior):
    """pθ(z) by a DDPM on the standardised codes. Options: ``steps`` (diffusion and sampling steps), ``hidden`` and
    ``layers`` of ε_θ, ``standardize``."""

    name = "diffusion"
    has_density = False
    conditional = True

    @checked_options
    def __init__(
        self,
        latent_dim: Annotated[int, Field(ge=1)],
        steps: Annotated[int, Field(ge=2, description="diffusion steps; sampling runs all of them")] = 100,
        hidden: Annotated[int, Field(ge=1)] = 128,
        layers: Annotated[int, Field(ge=1)] = 3,
        standardize: bool = True,
        condition_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.steps = steps
        betas = noise_schedule(steps)
        alpha_bars = torch.cumprod(1 - betas, dim=0)
        # Schedules are constants of the options, not state: recomputed, never checkpointed.
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bars", alpha_bars.float(), persistent=False)
        self.condition_net = None if condition_shape is None else ConditionEncoder(tuple(condition_shape), CONTEXT_FEATURES)
        context = 0 if self.condition_net is None else CONTEXT_FEATURES
        self.denoiser = stack([latent_dim + TIME_FEATURES + context, *[hidden] * layers, latent_dim])
        self.actnorm = ActNorm(latent_dim) if standardize else None
        if self.actnorm is not None:
            # Set once from the first training batch, then fixed: left to the denoising loss, it would shrink the
            # codes to nothing, where the noise is trivially predictable.
            self.actnorm.requires_grad_(False)

    def _context(self, cond: Tensor | None, like: Tensor) -> Tensor | None:
        return condition_features(self.condition_net, cond, like, self.name)

    def predict_noise(self, u_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        """ε_θ(u_t, t) for noised standardised codes u_t [B, D] at steps t [B] (long, 0-based)."""
        parts = [u_t, time_embedding(t, self.steps).to(u_t.dtype)]
        return self.denoiser(torch.cat(parts if context is None else [*parts, context], dim=1))

    def denoising_loss(self, u: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per row: ‖ε − ε_θ(√ᾱ_t·u + √(1 − ᾱ_t)·ε, t)‖² for standardised codes u and fresh noise ε, [B]."""
        alpha_bar = self.alpha_bars[t].to(u.dtype)[:, None]
        noise = torch.randn_like(u)
        u_t = alpha_bar.sqrt() * u + (1 - alpha_bar).sqrt() * noise
        return (noise - self.predict_noise(u_t, t, self._context(cond, u))).pow(2).sum(dim=1)

    def fit_loss(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        u = z if self.actnorm is None else self.actnorm(z)[0]
        t = torch.randint(0, self.steps, (z.shape[0],), device=z.device)
        return self.denoising_loss(u, t, cond).mean()

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        u = torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)
        context = self._context(cond, u)
        for step in reversed(range(self.steps)):
            t = torch.full((n,), step, device=u.device, dtype=torch.long)
            beta, alpha_bar = self.betas[step].to(u.dtype), self.alpha_bars[step].to(u.dtype)
            mean = (u - beta / (1 - alpha_bar).sqrt() * self.predict_noise(u, t, context)) / (1 - beta).sqrt()
            # σ_t² = β_t (Ho et al.'s first choice); no noise on the last step.
            u = mean + beta.sqrt() * torch.randn_like(u) if step else mean
        return u if self.actnorm is None else self.actnorm.inverse(u)


@hookimpl
def harness_register_priors(register: Callable[[type[Prior]], None]) -> None:
    register(DiffusionPrior)
