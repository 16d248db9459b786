"""The Laplace prior obeys prior-harness's prior contract (harness.testing), and what is special to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.testing import PriorContract, load_plugin
from harness_prior_laplace import LaplacePrior


class TestLearnedLaplace(PriorContract):
    @pytest.fixture
    def prior(self):
        return LaplacePrior(latent_dim=3, scale=2.0)


class TestFixedLaplace(PriorContract):
    @pytest.fixture
    def prior(self):
        return LaplacePrior(latent_dim=2, scale=0.5, learn=False)


def test_log_prob_matches_torch_distributions():
    prior = LaplacePrior(latent_dim=4, scale=1.5).double()
    with torch.no_grad():
        prior.loc.copy_(torch.tensor([0.0, 1.0, -2.0, 0.5]))
    z = torch.randn(100, 4, dtype=torch.float64) * 3
    expected = torch.distributions.Laplace(prior.loc, 1.5).log_prob(z).sum(-1)
    torch.testing.assert_close(prior.log_prob(z).detach(), expected.detach())


def test_fitting_finds_the_median_and_mean_absolute_deviation_of_the_codes():
    torch.manual_seed(0)
    codes = torch.distributions.Laplace(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])).sample((20000,))
    prior = LaplacePrior(latent_dim=2)
    optimizer = torch.optim.Adam(prior.fit_parameters(), lr=0.05)
    for _ in range(400):
        loss = prior.fit_loss(codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(prior.loc.detach(), codes.median(dim=0).values, atol=0.05, rtol=0)
    scale = (codes - codes.median(dim=0).values).abs().mean(dim=0)
    torch.testing.assert_close(prior.log_scale.exp().detach(), scale, atol=0, rtol=0.03)


def test_base_space_is_standard_normal_far_into_the_tails():
    prior = LaplacePrior(latent_dim=1, scale=1.0).double()
    z = torch.tensor([[-600.0], [-30.0], [0.0], [30.0], [600.0]], dtype=torch.float64)
    z0 = prior.to_base(z)
    assert torch.isfinite(z0).all() and (z0.diff(dim=0) > 0).all()
    torch.testing.assert_close(prior.from_base(z0), z)


def test_a_fixed_laplace_has_nothing_to_fit():
    assert LaplacePrior(latent_dim=3, learn=False).fit_parameters() == []


def test_the_harness_finds_it_through_its_entry_point():
    assert load_plugin("prior", "laplace") is LaplacePrior


def test_the_tiny_benchmark_trains_and_evaluates_every_laplace_cell(tmp_path):
    config = Path(__file__).parents[1] / "benchmarks.yaml"
    assert main(["run", str(config), "--out", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    results = [json.loads(p.read_text()) for p in (tmp_path / "cells").glob("*/result.json")]
    laplace = [r for r in results if r["cell"]["prior"] == "laplace"]
    assert len(laplace) == 2 and all(r["status"] == "done" for r in laplace)
    assert all(r["metrics"]["prior_fit.nll"] == r["metrics"]["prior_fit.nll"] for r in laplace)  # not NaN
