"""Every built-in regularizer passes ``harness.testing.RegularizerContract``, with the priors it is used with."""

from __future__ import annotations

import pytest

from harness import Prior, Regularizer
from harness.testing import RegularizerContract
from harness_plugins.priors.gan import GANPrior
from harness_plugins.priors.realnvp import RealNVPPrior
from harness_plugins.regularizers.adversarial import AdversarialRegularizer
from harness_plugins.regularizers.kl import KLRegularizer
from harness_plugins.regularizers.none import NoRegularizer



class TestKLInClosedForm(RegularizerContract):
    @pytest.fixture
    def regularizer(self) -> Regularizer:
        return KLRegularizer()


class TestKLSingleSampleWithAFlowPrior(RegularizerContract):
    @pytest.fixture
    def regularizer(self) -> Regularizer:
        return KLRegularizer(analytic=False)

    @pytest.fixture
    def prior(self) -> Prior:
        return RealNVPPrior(latent_dim=3, depth=2, hidden=16, layers=1)


class TestNone(RegularizerContract):
    @pytest.fixture
    def regularizer(self) -> Regularizer:
        return NoRegularizer()


class TestAdversarial(RegularizerContract):
    @pytest.fixture
    def regularizer(self) -> Regularizer:
        return AdversarialRegularizer(hidden=16, layers=1)


class TestAdversarialWithAGANPrior(RegularizerContract):
    @pytest.fixture
    def regularizer(self) -> Regularizer:
        return AdversarialRegularizer(hidden=16, layers=1, d_steps=2)

    @pytest.fixture
    def prior(self) -> Prior:
        return GANPrior(latent_dim=3, hidden=16, layers=1)
