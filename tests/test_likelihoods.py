import math

import torch
from torch.distributions import Bernoulli, Independent, Normal

from harness.model.likelihoods import BernoulliLikelihood, GaussianLikelihood, build_likelihood


def test_gaussian_nll_matches_torch_normal_with_variance_gamma():
    x, raw = torch.rand(16, 1, 8, 8, dtype=torch.float64), torch.randn(16, 1, 8, 8, dtype=torch.float64)
    gamma = 0.05
    expected = -Independent(Normal(raw, math.sqrt(gamma)), 3).log_prob(x)
    torch.testing.assert_close(GaussianLikelihood(gamma).nll(x, raw), expected)


def test_bernoulli_nll_matches_torch_bernoulli_on_binary_data():
    x = (torch.rand(16, 10) > 0.5).double()
    logits = torch.randn(16, 10, dtype=torch.float64)
    expected = -Independent(Bernoulli(logits=logits), 1).log_prob(x)
    torch.testing.assert_close(BernoulliLikelihood().nll(x, logits), expected)
    torch.testing.assert_close(BernoulliLikelihood().mean(logits), torch.sigmoid(logits))


def test_optimal_gamma_is_the_batch_mse_and_the_nll_is_the_fixed_gamma_nll_at_that_value():
    torch.manual_seed(0)
    x, raw = torch.rand(16, 1, 8, 8, dtype=torch.float64), torch.rand(16, 1, 8, 8, dtype=torch.float64)
    likelihood = GaussianLikelihood("optimal")
    mse = (x - raw).pow(2).mean()
    torch.testing.assert_close(likelihood.optimal_gamma(x, raw), mse)
    torch.testing.assert_close(likelihood.nll(x, raw), GaussianLikelihood(float(mse)).nll(x, raw))


def test_optimal_gamma_maximises_the_batch_likelihood_over_fixed_gammas():
    torch.manual_seed(0)
    x, raw = torch.rand(64, 20, dtype=torch.float64), torch.rand(64, 20, dtype=torch.float64)
    at_optimum = float(GaussianLikelihood("optimal").nll(x, raw).sum())
    mse = float((x - raw).pow(2).mean())
    for factor in (0.5, 0.9, 1.1, 2.0):
        assert float(GaussianLikelihood(mse * factor).nll(x, raw).sum()) > at_optimum


def test_optimal_gamma_is_detached_so_the_gradient_is_the_residual_over_gamma():
    x = torch.rand(8, 5, dtype=torch.float64)
    raw = torch.rand(8, 5, dtype=torch.float64, requires_grad=True)
    GaussianLikelihood("optimal").nll(x, raw).sum().backward()
    gamma = (x - raw.detach()).pow(2).mean()
    torch.testing.assert_close(raw.grad, (raw.detach() - x) / gamma)


def test_optimal_gamma_records_a_running_mean_of_training_batches_only():
    likelihood = GaussianLikelihood("optimal")
    assert math.isnan(likelihood.learned()["likelihood.gamma"])
    x = torch.zeros(4, 3)
    likelihood.nll(x, torch.full((4, 3), 0.5))  # γ* = 0.25: first batch sets the mean
    assert likelihood.learned()["likelihood.gamma"] == 0.25
    likelihood.nll(x, torch.full((4, 3), 1.0))  # γ* = 1
    expected = GaussianLikelihood.RUNNING_DECAY * 0.25 + (1 - GaussianLikelihood.RUNNING_DECAY) * 1.0
    assert math.isclose(likelihood.learned()["likelihood.gamma"], expected, rel_tol=1e-6)
    likelihood.eval()
    likelihood.nll(x, torch.full((4, 3), 3.0))
    assert math.isclose(likelihood.learned()["likelihood.gamma"], expected, rel_tol=1e-6)
    assert "running_gamma" in likelihood.state_dict() and not list(likelihood.parameters())


def test_build_likelihood_understands_learned_and_optimal():
    assert build_likelihood("gaussian", "optimal").optimal
    assert build_likelihood("gaussian", "learned").log_gamma is not None
    assert build_likelihood("gaussian", 0.05).fixed_gamma == 0.05
