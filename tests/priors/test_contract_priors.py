"""Every built-in prior passes ``harness.testing.PriorContract``, in the configurations that exercise its features."""

from __future__ import annotations


import pytest
import torch
from torch import Tensor

from harness import Prior
from harness.testing import PriorContract
from harness_plugins.priors.gan import GANPrior
from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.priors.gmm import GMMPrior
from harness_plugins.priors.realnvp import RealNVPPrior
from harness_plugins.priors.realnvp_ex_post import RealNVPExPostPrior

from conftest import perturbed


class TestGaussian(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return GaussianPrior(latent_dim=3)


class TestRealNVP(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(RealNVPPrior(latent_dim=3, depth=3, hidden=16, layers=1))


class TestRealNVPTwoDimensionsWithoutActNorm(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(RealNVPPrior(latent_dim=2, depth=2, hidden=16, layers=1, actnorm=False))


class TestConditionalRealNVP(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(RealNVPPrior(latent_dim=2, depth=2, hidden=16, layers=1, cond_dim=2))

    @pytest.fixture
    def cond(self) -> Tensor:
        return torch.eye(2)[torch.arange(64) % 2]  # two one-hot classes


def _two_images(n: int = 64) -> Tensor:
    """Alternating rows of two fixed 8×8 grey images in [0, 1]: image conditions such as an edge map."""
    pair = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    return pair[torch.arange(n) % 2]


class TestConditionalGaussianOnClasses(PriorContract):
    """N(μ(y), I) with y a one-hot class: the VUNet prior p(z|y)."""

    @pytest.fixture
    def prior(self) -> Prior:
        return GaussianPrior(latent_dim=2, condition_shape=(2,))

    @pytest.fixture
    def cond(self) -> Tensor:
        return torch.eye(2)[torch.arange(64) % 2]


class TestConditionalGaussianOnImages(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return GaussianPrior(latent_dim=2, condition_shape=(1, 8, 8))

    @pytest.fixture
    def cond(self) -> Tensor:
        return _two_images()


class TestRealNVPConditionedOnImages(PriorContract):
    """The paper's conditional flow (§6): a condition network feeds every coupling and the base mean."""

    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(RealNVPPrior(latent_dim=2, depth=2, hidden=16, layers=1, condition_shape=(1, 8, 8)))

    @pytest.fixture
    def cond(self) -> Tensor:
        return _two_images()


class TestGMM(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return GMMPrior(latent_dim=2, components=3)


class TestGAN(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return GANPrior(latent_dim=2, hidden=16, layers=1)


class TestRealNVPExPost(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return RealNVPExPostPrior(latent_dim=3, depth=3, hidden=16, layers=1, steps=200)
