"""Contract test suites that plugin packages reuse, one per plugin kind (like scikit-learn's ``check_estimator``).

Subclass a suite in a test module and provide the fixture it names; every check is a test method of the suite:

    import pytest
    from harness.testing import PriorContract

    class TestLaplace(PriorContract):
        @pytest.fixture
        def prior(self):
            return LaplacePrior(latent_dim=3, scale=2.0)

=======================  ====================  ===========================================================
suite                    required fixture      optional fixtures (with defaults)
=======================  ====================  ===========================================================
``PriorContract``        ``prior``             ``codes`` (what the prior is fitted to), ``cond`` (None)
``RegularizerContract``  ``regularizer``       ``prior`` (a standard normal of dimension 3)
``EvaluatorContract``    ``evaluator``         ``eval_data``, ``trained_model`` (tiny labelled 8×8 images)
``DatasetContract``      ``dataset``           none
=======================  ====================  ===========================================================

The checks are what the harness relies on, with tolerances that catch real bugs in priors of a few dimensions:
a log-density off by 0.1 nats, samples that ignore the parameters, a wrong inverse, a ``fit_loss`` without
gradients. A check that does not apply (no density, not invertible, no condition given) is skipped with its reason.
Only pytest (what plugin authors test with) and prior-harness's own dependencies are imported; no pytest plugin
is needed.
"""

from __future__ import annotations

from harness.testing.datasets import DatasetContract
from harness.testing.evaluators import EvaluatorContract, make_eval_data, make_trained_model
from harness.testing.priors import PriorContract, default_codes, fit_prior
from harness.testing.regularizers import RegularizerContract
from harness.testing.support import load_plugin

__all__ = [
    "DatasetContract",
    "EvaluatorContract",
    "PriorContract",
    "RegularizerContract",
    "default_codes",
    "fit_prior",
    "load_plugin",
    "make_eval_data",
    "make_trained_model",
]
