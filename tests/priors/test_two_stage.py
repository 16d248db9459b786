"""The two-stage VAE prior: the prior contract, its ELBO a lower bound close to the true density of Gaussian codes,
and samples with the codes' moments."""

from __future__ import annotations

import pytest
import torch

from harness import Prior
from harness.testing import PriorContract
from harness_plugins.priors.two_stage import TwoStagePrior


class TestTwoStage(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return TwoStagePrior(latent_dim=2, hidden=16, layers=1, fit_steps=100)


def _gaussian_codes(n: int = 4096) -> tuple[torch.Tensor, torch.distributions.Distribution]:
    torch.manual_seed(0)
    truth = torch.distributions.Independent(torch.distributions.Normal(torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])), 1)
    return truth.sample((n,)), truth


@pytest.fixture(scope="module")
def fitted_to_gaussian_codes() -> tuple[TwoStagePrior, torch.Tensor, torch.distributions.Distribution]:
    codes, truth = _gaussian_codes()
    prior = TwoStagePrior(latent_dim=2, hidden=64, layers=2, fit_steps=1500, fit_lr=3e-3)
    prior.fit_post_hoc(codes)
    return prior.eval(), codes, truth


def test_the_elbo_bounds_the_true_log_density_from_below_and_comes_close(fitted_to_gaussian_codes):
    prior, codes, truth = fitted_to_gaussian_codes
    with torch.no_grad():
        elbo = float(torch.stack([prior.elbo(codes) for _ in range(4)]).mean())
    exact = float(truth.log_prob(codes).mean())
    assert elbo <= exact + 0.02, (elbo, exact)
    assert elbo >= exact - 0.5, (elbo, exact)


def test_samples_have_the_codes_mean_and_spread(fitted_to_gaussian_codes):
    prior, _, truth = fitted_to_gaussian_codes
    with torch.no_grad():
        samples = prior.sample(4000)
    torch.testing.assert_close(samples.mean(dim=0), truth.mean, atol=0.15 * 3, rtol=0.1)
    torch.testing.assert_close(samples.std(dim=0), truth.stddev, atol=0.2, rtol=0.15)
