import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.priors.gmm import GMMPrior

CENTERS = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)


def _codes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(0, 3, (n,), generator=g)
    return CENTERS[which] + 0.4 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _fitted(components: int = 3) -> GMMPrior:
    torch.manual_seed(0)
    prior = GMMPrior(latent_dim=2, components=components).double()
    prior.fit_post_hoc(_codes(3000, seed=1))
    return prior


def test_unfitted_gmm_is_the_standard_normal():
    z = torch.randn(50, 2, dtype=torch.float64)
    prior = GMMPrior(latent_dim=2).double()
    torch.testing.assert_close(prior.log_prob(z), GaussianPrior(latent_dim=2).double().log_prob(z))


def test_log_prob_matches_scikit_learn_score_samples_of_the_same_fit():
    prior = _fitted()
    z = _codes(200, seed=2)
    reference = GaussianMixture(3, covariance_type="full", reg_covar=prior.reg_covar)
    reference.weights_ = prior.weights.numpy()
    reference.means_ = prior.means.numpy()
    cov = prior.scale_tril @ prior.scale_tril.transpose(-1, -2)
    reference.covariances_ = cov.numpy()
    reference.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(cov.numpy()))
    np.testing.assert_allclose(prior.log_prob(z).numpy(), reference.score_samples(z.numpy()), rtol=1e-10, atol=1e-10)


def test_samples_come_from_the_fitted_mixture_and_held_out_codes_score_better_than_n01():
    prior = _fitted()
    torch.manual_seed(3)
    samples = prior.sample(30000)
    nearest = torch.cdist(samples, CENTERS).argmin(dim=1)
    shares = torch.bincount(nearest, minlength=3).double() / len(samples)
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02, rtol=0)
    for k in range(3):
        spread = samples[nearest == k].std(dim=0)
        torch.testing.assert_close(spread, torch.full((2,), 0.4, dtype=torch.float64), atol=0.03, rtol=0)
    held_out = _codes(2000, seed=4)
    assert prior.log_prob(held_out).mean() > GaussianPrior(latent_dim=2).double().log_prob(held_out).mean() + 1.0


def test_state_dict_round_trip_keeps_the_fitted_mixture():
    prior = _fitted()
    path_state = {k: v.clone() for k, v in prior.state_dict().items()}
    restored = GMMPrior(latent_dim=2, components=3).double()
    restored.load_state_dict(path_state)
    z = _codes(100, seed=5)
    torch.testing.assert_close(restored.log_prob(z), prior.log_prob(z))
    assert bool(restored.fitted)
