"""Prior fit: the MMD estimator against a brute-force reading of its formula, and the NLL against the prior's
own log-density of the test codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from harness import DataSplit, EvalData, Prior, TrainedModel
from harness_plugins.evaluators.prior_fit import PriorFitEvaluator, mmd_squared
from harness_plugins.priors.gaussian import GaussianPrior


def _brute_force_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Gretton et al.'s unbiased MMD², written as its sums over pairs, median heuristic on the pooled sample."""
    pooled = np.concatenate([x, y])
    sq = [float(np.sum((a - b) ** 2)) for i, a in enumerate(pooled) for b in pooled[i + 1 :]]
    sq.sort()
    sigma_sq = sq[(len(sq) - 1) // 2]  # the lower median, as torch.median takes it

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * sigma_sq)))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_a_brute_force_computation_of_the_same_estimator():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=g), torch.randn(25, 3, generator=g) + 0.5
    assert mmd_squared(x, y) == pytest.approx(_brute_force_mmd(x.double().numpy(), y.double().numpy()), rel=1e-9)


def test_mmd_is_about_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, 4, generator=g), torch.randn(500, 4, generator=g)
    same = mmd_squared(x, y)
    shifted = mmd_squared(x, y + 1.0)
    assert abs(same) < 0.005
    assert shifted > 0.1 > 20 * abs(same)


class PointPrior(Prior):
    """Every sample at the origin and no density: a collapsed GAN prior."""

    name = "point"
    has_density = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.zeros(n, self.latent_dim)


def _model_and_data(prior: Prior) -> tuple[TrainedModel, EvalData]:
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(6, 2 * 3), nn.Linear(3, 6)
    model = TrainedModel(encoder, decoder, prior, nn.Identity(), 3, (6,), torch.device("cpu"), 0, None)
    test = DataSplit(torch.randn(300, 6))
    return model, EvalData("vectors", {}, test, test, None)


def test_nll_is_the_priors_mean_negative_log_prob_of_the_test_codes():
    model, data = _model_and_data(GaussianPrior(latent_dim=3))
    with torch.inference_mode():
        result = PriorFitEvaluator(batch_size=70).evaluate(model, data)
        expected = -model.prior.log_prob(model.encode(data.test.x).mean).mean()
    assert result.keys() == {"nll", "mmd"}
    assert result["nll"] == pytest.approx(float(expected), rel=1e-6)


def test_a_prior_without_density_gets_only_an_mmd_and_a_collapsed_one_a_large_mmd():
    model, data = _model_and_data(PointPrior(latent_dim=3))
    with torch.inference_mode():
        result = PriorFitEvaluator(samples=200).evaluate(model, data)
    assert result.keys() == {"mmd"}
    assert result["mmd"] > 0.2
