import torch
from torch.distributions import Independent, Normal, kl_divergence

from harness import GaussianPosterior
from harness_plugins.priors.gaussian import GaussianPrior


def test_log_prob_matches_torch_distributions_standard_normal():
    z = torch.randn(64, 5, dtype=torch.float64)
    expected = Independent(Normal(torch.zeros(5, dtype=torch.float64), 1.0), 1).log_prob(z)
    prior = GaussianPrior(latent_dim=5).double()
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_analytic_kl_matches_torch_distributions_closed_form():
    mean, logvar = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
    q = Independent(Normal(mean, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros(3, dtype=torch.float64), 1.0), 1)
    got = GaussianPrior(latent_dim=3).analytic_kl(GaussianPosterior(mean, logvar))
    torch.testing.assert_close(got, kl_divergence(q, p))


def test_single_sample_kl_estimate_is_unbiased_for_the_closed_form():
    torch.manual_seed(0)
    post = GaussianPosterior(torch.tensor([[0.7, -1.2]]).expand(200_000, 2), torch.tensor([[-0.5, 0.3]]).expand(200_000, 2))
    prior = GaussianPrior(latent_dim=2)
    z = post.rsample()
    estimate = (post.log_prob(z) - prior.log_prob(z)).mean()
    torch.testing.assert_close(estimate, prior.analytic_kl(post)[0], atol=0.02, rtol=0)


def test_samples_have_zero_mean_unit_covariance_on_the_priors_dtype():
    torch.manual_seed(0)
    prior = GaussianPrior(latent_dim=3).double()
    z = prior.sample(100_000)
    assert z.dtype == torch.float64 and z.shape == (100_000, 3)
    torch.testing.assert_close(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(3, dtype=torch.float64), atol=0.02, rtol=0)


def test_base_space_is_the_identity_and_the_state_dict_is_empty():
    prior = GaussianPrior(latent_dim=4)
    z = torch.randn(8, 4)
    assert torch.equal(prior.to_base(z), z) and torch.equal(prior.from_base(z), z)
    assert prior.state_dict() == {}
