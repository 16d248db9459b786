"""Ex-post variants of the zuko and diffusion priors: the prior contract, N(0, I) until fitted, and fitted to the
codes by their own loss afterwards."""

from __future__ import annotations

import pytest
import torch

from harness import Prior
from harness.testing import PriorContract, default_codes
from harness_plugins.priors.ex_post import DiffusionExPostPrior, ZukoExPostPrior


class TestZukoExPost(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return ZukoExPostPrior(latent_dim=2, transforms=2, hidden=16, layers=1, fit_steps=300, fit_lr=1e-2)


class TestDiffusionExPost(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return DiffusionExPostPrior(latent_dim=2, steps=10, hidden=16, layers=1, fit_steps=100)


def test_until_fitted_it_is_the_standard_normal_with_nothing_to_fit():
    prior = ZukoExPostPrior(latent_dim=3, transforms=1, hidden=8, layers=1)
    z = torch.randn(5, 3)
    torch.testing.assert_close(prior.log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=1))
    assert prior.fit_parameters() == [] and float(prior.fit_loss(z)) == 0.0


def test_the_ex_post_fit_raises_the_likelihood_of_the_codes():
    torch.manual_seed(0)
    codes = default_codes(2)
    prior = ZukoExPostPrior(latent_dim=2, transforms=2, hidden=16, layers=1, fit_steps=300, fit_lr=1e-2)
    before = float(prior.log_prob(codes).mean())
    prior.fit_post_hoc(codes)
    prior.eval()
    with torch.no_grad():
        after = float(prior.log_prob(codes).mean())
    assert after > before + 0.5, (before, after)
