"""Learned decoder variance (Dai & Wipf 2019): γ converges to the noise level of the data."""

import torch
from torch import nn

from harness.likelihoods import GaussianLikelihood
from harness.train import Model, training_step
from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.regularizers.kl import KLRegularizer


def test_learned_gamma_is_the_maximum_likelihood_variance_of_fixed_residuals():
    x, raw = torch.zeros(256, 12), torch.randn(256, 12) * 0.3
    likelihood = GaussianLikelihood(None)
    opt = torch.optim.Adam(likelihood.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        likelihood.nll(x, raw).mean().backward()
        opt.step()
    torch.testing.assert_close(likelihood.learned()["likelihood.gamma"], float(raw.pow(2).mean()), rtol=1e-3, atol=0)


def test_learned_gamma_converges_near_the_true_noise_level_of_linear_gaussian_data():
    torch.manual_seed(0)
    noise_var, n, dim, latent = 0.01, 4096, 10, 2
    mixing = torch.randn(latent, dim)
    data = torch.randn(n, latent) @ mixing + noise_var**0.5 * torch.randn(n, dim)
    model = Model(
        encoder=nn.Linear(dim, 2 * latent),
        decoder=nn.Linear(latent, dim),
        likelihood=GaussianLikelihood(None),
        prior=GaussianPrior(latent),
        regularizer=KLRegularizer(),
        lr=0.01,
    )
    for step in range(3000):
        idx = torch.randint(0, n, (256,))
        training_step(model, data[idx], beta=1.0)
    gamma = model.likelihood.learned()["likelihood.gamma"]
    # A linear VAE recovers the principal subspace; the residual variance is the noise (plus tiny posterior spread).
    assert 0.8 * noise_var < gamma < 1.3 * noise_var, gamma
