import math

import torch
from torch.distributions import Bernoulli, Independent, Normal

from harness.likelihoods import BernoulliLikelihood, GaussianLikelihood


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
