"""The latent diffusion prior: the prior contract, the denoising loss against its closed form on Gaussian codes, and
samples that land on the codes' two modes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from harness import Prior
from harness.testing import PriorContract, fit_prior
from harness_plugins.priors.diffusion import DiffusionPrior


class TestDiffusion(PriorContract):
    fit_steps = 20

    @pytest.fixture
    def prior(self) -> Prior:
        return DiffusionPrior(latent_dim=2, steps=10, hidden=16, layers=1)


class TestDiffusionConditionedOnClasses(PriorContract):
    fit_steps = 20

    @pytest.fixture
    def prior(self) -> Prior:
        return DiffusionPrior(latent_dim=2, steps=10, hidden=16, layers=1, condition_shape=(2,))

    @pytest.fixture
    def cond(self) -> Tensor:
        return torch.eye(2)[torch.arange(64) % 2]


def _optimal_loss(alpha_bar: float, variance: float, dims: int) -> float:
    """E‖ε − E[ε | u_t]‖² for u ~ N(0, variance·I): D · ᾱσ² / (ᾱσ² + 1 − ᾱ) (the Gaussian's posterior variance of ε)."""
    return dims * alpha_bar * variance / (alpha_bar * variance + 1 - alpha_bar)


def test_the_trained_denoising_loss_matches_the_closed_form_at_small_and_large_noise():
    torch.manual_seed(0)
    prior = DiffusionPrior(latent_dim=2, steps=50, hidden=64, layers=2, standardize=False)
    codes = torch.randn(4096, 2)  # u ~ N(0, I): the optimal denoiser is linear in u_t
    fit_prior(prior, codes, steps=1500, lr=3e-3)
    for step in (0, 49):  # t → 0: the noise is unpredictable (loss → D); t = T: almost all of it is predictable
        alpha_bar = float(prior.alpha_bars[step])
        with torch.no_grad():
            loss = float(prior.denoising_loss(codes, torch.full((len(codes),), step)).mean())
        assert loss == pytest.approx(_optimal_loss(alpha_bar, 1.0, 2), abs=0.15), (step, alpha_bar)


def test_samples_land_on_both_modes_of_the_codes():
    torch.manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])
    codes = centres[torch.arange(2048) % 2] + 0.3 * torch.randn(2048, 2)
    prior = fit_prior(DiffusionPrior(latent_dim=2, steps=50, hidden=64, layers=2), codes, steps=1500, lr=3e-3)
    with torch.no_grad():
        samples = prior.sample(1000)
    near = torch.cdist(samples, centres).min(dim=1).values < 1.0
    left = float((samples[:, 0] < 0).float().mean())
    assert float(near.float().mean()) > 0.8 and 0.3 < left < 0.7
