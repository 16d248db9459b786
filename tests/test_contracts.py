"""The contract suites of ``harness.testing`` catch planted faults: each faulty plugin below fails the check meant for
its fault, and the correct plugin it was made from passes everything."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

PLANTED = '''
import math

import pytest
import torch
from torch import nn

from harness import DataSplit, Dataset, Evaluator, Prior, Regularizer
from harness.testing import DatasetContract, EvaluatorContract, PriorContract, RegularizerContract


class Affine(Prior):
    """N(loc, diag(scale²)) as the flow z = loc + scale·z0, with learned loc and log-scale: correct."""

    name = "affine"
    invertible = True
    packable = True

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def to_base(self, z, cond=None):
        return (z - self.loc) * torch.exp(-self.log_scale)

    def from_base(self, z0, cond=None):
        return self.loc + z0 * torch.exp(self.log_scale)

    def log_prob(self, z, cond=None):
        z0 = self.to_base(z)
        return -0.5 * (z0.pow(2) + math.log(2 * math.pi)).sum(-1) - self.log_scale.sum()

    def sample(self, n, cond=None):
        return self.from_base(torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype))


class OffByAConstant(Affine):
    def log_prob(self, z, cond=None):
        return super().log_prob(z) + 0.1


class SampleIgnoresItsParameters(Affine):
    def sample(self, n, cond=None):
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)


class WrongInverse(Affine):
    def from_base(self, z0, cond=None):
        return (self.loc + z0) * torch.exp(self.log_scale)  # shifts before scaling

    def sample(self, n, cond=None):  # right, so that only the inverse is wrong
        return self.loc + torch.randn(n, self.latent_dim, dtype=self.dtype) * torch.exp(self.log_scale)


class FitLossWithoutGradient(Affine):
    def fit_loss(self, z, cond=None):
        return -self.log_prob(z).mean().detach()


class BranchesOnItsCodes(Affine):
    """Declares packable but decides in Python on a tensor: vmap cannot take that branch for K members at once."""

    def fit_loss(self, z, cond=None):
        loss = -self.log_prob(z).mean()
        return loss if bool(z.mean() > -100.0) else 2 * loss


class Laplace(Prior):
    """A fixed Laplace(0, scale): correct."""

    name = "laplace"

    def __init__(self, latent_dim, scale=2.0):
        super().__init__()
        self.latent_dim, self.scale = latent_dim, scale

    def log_prob(self, z, cond=None):
        return (-z.abs() / self.scale - math.log(2 * self.scale)).sum(-1)

    def sample(self, n, cond=None):
        return torch.distributions.Laplace(0.0, self.scale).sample((n, self.latent_dim)).to(self.device, self.dtype)


class LaplaceSampleIgnoresItsScale(Laplace):
    def sample(self, n, cond=None):
        return torch.distributions.Laplace(0.0, 1.0).sample((n, self.latent_dim)).to(self.device, self.dtype)


def prior_suite(cls, dim):
    class Suite(PriorContract):
        @pytest.fixture
        def prior(self):
            return cls(latent_dim=dim)

    return Suite


TestAffine = prior_suite(Affine, 3)
TestOffByAConstant = prior_suite(OffByAConstant, 3)
TestSampleIgnoresItsParameters = prior_suite(SampleIgnoresItsParameters, 3)
TestWrongInverse = prior_suite(WrongInverse, 3)
TestFitLossWithoutGradient = prior_suite(FitLossWithoutGradient, 3)
TestBranchesOnItsCodes = prior_suite(BranchesOnItsCodes, 3)
TestLaplace = prior_suite(Laplace, 2)
TestLaplaceSampleIgnoresItsScale = prior_suite(LaplaceSampleIgnoresItsScale, 2)


class SquaredNorm(Regularizer):
    name = "squared-norm"
    packable = True

    def penalty(self, z, posterior, prior, cond=None):
        return 0.5 * z.pow(2).sum(-1)


class DrawsInItsPenalty(SquaredNorm):
    """Declares packable but draws random numbers in the step: vmap would give every member one stream."""

    def penalty(self, z, posterior, prior, cond=None):
        return super().penalty(z, posterior, prior) * (1 + 0.01 * torch.rand(()))


class TestDrawsInItsPenalty(RegularizerContract):
    @pytest.fixture
    def regularizer(self):
        return DrawsInItsPenalty()


class PenaltyIsAScalar(SquaredNorm):
    def penalty(self, z, posterior, prior, cond=None):
        return super().penalty(z, posterior, prior).mean()


class TestSquaredNorm(RegularizerContract):
    @pytest.fixture
    def regularizer(self):
        return SquaredNorm()


class TestPenaltyIsAScalar(RegularizerContract):
    @pytest.fixture
    def regularizer(self):
        return PenaltyIsAScalar()


class CodeNorm(Evaluator):
    name = "code_norm"
    metrics = {"": "min"}

    def evaluate(self, model, data):
        return {"": float(model.encode(data.test.x).mean.norm(dim=1).mean())}


class UndeclaredMetric(CodeNorm):
    def evaluate(self, model, data):
        return {**super().evaluate(model, data), "max": 1.0}


class TestCodeNorm(EvaluatorContract):
    @pytest.fixture
    def evaluator(self):
        return CodeNorm()


class TestUndeclaredMetric(EvaluatorContract):
    @pytest.fixture
    def evaluator(self):
        return UndeclaredMetric()


class Points(Dataset):
    name = "points"

    def load(self, split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        labels = torch.randint(0, 3, (50,), generator=g)
        return DataSplit(torch.randn(50, 2, generator=g) + labels[:, None], labels, "class", ("a", "b", "c"))


class LabelBeyondItsNames(Points):
    def load(self, split):
        data = super().load(split)
        return DataSplit(data.x, data.labels + 1, "class", data.label_names)


class TestPoints(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return Points()


class TestLabelBeyondItsNames(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return LabelBeyondItsNames()
'''

PRIOR_CHECKS = {
    "test_declares_a_name_a_latent_dim_and_its_capabilities",
    "test_shapes_dtypes_and_devices",
    "test_fit_loss_has_gradients_for_every_fit_parameter_and_none_for_the_codes",
    "test_sample_depends_on_fit_parameters",
    "test_log_prob_integrates_to_one",
    "test_samples_score_higher_than_a_shifted_copy",
    "test_samples_match_the_density",
    "test_from_base_inverts_to_base",
    "test_log_prob_is_the_change_of_variables_of_a_standard_normal_base",
    "test_conditioning_changes_the_distribution",
    "test_state_dict_round_trip_preserves_log_prob_and_sample",
    "test_fitting_and_sampling_are_deterministic_under_a_seed",
    "test_packed_copies_fit_and_score_like_copies_alone",
}


class _Reports:
    """A pytest plugin that keeps every test report of the inner run."""

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """Run the suites on the planted plugins once: class -> outcome -> the checks (parameters dropped) with it."""
    folder = tmp_path_factory.mktemp("planted")
    (folder / "test_planted.py").write_text(PLANTED, encoding="utf-8")
    kept = _Reports()
    args = [str(folder), "-q", "-p", "no:cacheprovider", "--rootdir", str(folder), "--import-mode=importlib"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster than two, and the cores are shared
    try:
        assert pytest.main(args, plugins=[kept]) == pytest.ExitCode.TESTS_FAILED
    finally:
        torch.set_num_threads(threads)
    by_class: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for report in kept.reports:
        if report.when == "call" or report.outcome != "passed":
            _, cls, test = report.nodeid.split("::")
            by_class[cls][report.outcome].add(test.split("[")[0])
    return by_class


def _failed(outcomes: dict[str, dict[str, set[str]]], cls: str) -> set[str]:
    return outcomes[cls]["failed"]


@pytest.mark.parametrize("cls", ["TestAffine", "TestLaplace", "TestSquaredNorm", "TestCodeNorm", "TestPoints"])
def test_the_correct_plugins_pass_every_check(outcomes, cls):
    assert _failed(outcomes, cls) == set()
    assert outcomes[cls]["passed"]


def test_the_suite_skips_what_does_not_apply(outcomes):
    # Affine is invertible and learned, but not conditional; Laplace has no parameters and no inverse. Without
    # CUDA the CUDA half of the shapes check is skipped too.
    cuda = {"test_shapes_dtypes_and_devices"} if not torch.cuda.is_available() else set()
    unconditional = {"test_conditioning_changes_the_distribution", "test_samples_follow_their_condition"}
    assert outcomes["TestAffine"]["skipped"] == unconditional | cuda
    assert outcomes["TestLaplace"]["skipped"] == cuda | unconditional | {
        "test_packed_copies_fit_and_score_like_copies_alone",  # not declared packable
        "test_sample_depends_on_fit_parameters",
        "test_from_base_inverts_to_base",
        "test_log_prob_is_the_change_of_variables_of_a_standard_normal_base",
    }


def test_a_log_prob_off_by_a_constant_fails_normalisation_and_change_of_variables(outcomes):
    assert _failed(outcomes, "TestOffByAConstant") == {
        "test_log_prob_integrates_to_one",
        "test_log_prob_is_the_change_of_variables_of_a_standard_normal_base",
    }


def test_a_sample_that_ignores_its_parameters_fails_the_two_sample_check(outcomes):
    assert _failed(outcomes, "TestSampleIgnoresItsParameters") == {
        "test_sample_depends_on_fit_parameters",
        "test_samples_match_the_density",
    }
    assert _failed(outcomes, "TestLaplaceSampleIgnoresItsScale") == {"test_samples_match_the_density"}


def test_a_packable_plugin_that_branches_on_a_tensor_or_draws_in_its_step_fails_the_packing_check(outcomes):
    assert _failed(outcomes, "TestBranchesOnItsCodes") == {"test_packed_copies_fit_and_score_like_copies_alone"}
    assert _failed(outcomes, "TestDrawsInItsPenalty") == {
        "test_packed_copies_penalise_and_train_the_encoder_like_copies_alone"
    }


def test_a_wrong_inverse_fails_the_round_trip(outcomes):
    assert _failed(outcomes, "TestWrongInverse") == {"test_from_base_inverts_to_base"}


def test_a_fit_loss_without_gradient_fails_the_gradient_check_and_every_check_of_a_fitted_prior(outcomes):
    failed = _failed(outcomes, "TestFitLossWithoutGradient")
    assert "test_fit_loss_has_gradients_for_every_fit_parameter_and_none_for_the_codes" in failed
    assert failed <= PRIOR_CHECKS


def test_the_other_suites_catch_a_scalar_penalty_an_undeclared_metric_and_a_label_out_of_range(outcomes):
    assert _failed(outcomes, "TestPenaltyIsAScalar") == {"test_penalty_is_one_finite_value_per_row"}
    assert _failed(outcomes, "TestUndeclaredMetric") == {"test_evaluate_returns_declared_finite_floats"}
    assert _failed(outcomes, "TestLabelBeyondItsNames") == {"test_labels_agree_with_label_kind"}
