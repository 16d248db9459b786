"""Every built-in evaluator passes ``harness.testing.EvaluatorContract`` on the suite's tiny trained model.

Weights are never downloaded: Inception is absent (its evaluators must then say so through ``PluginUnavailable``),
and LPIPS runs on stand-in SqueezeNet weights written to a temporary TORCH_HOME.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from harness import EvalData, Evaluator
from harness.testing import EvaluatorContract, make_eval_data
from harness_plugins.evaluators.coverage import CoverageEvaluator
from harness_plugins.evaluators.feature_diversity import FeatureDiversityEvaluator
from harness_plugins.evaluators.fidelity import FIDEvaluator, InceptionScoreEvaluator
from harness_plugins.evaluators.lpips_diversity import LPIPSDiversityEvaluator, backbone_path
from harness_plugins.evaluators.prior_fit import PriorFitEvaluator
from harness_plugins.evaluators.reconstruction import ReconstructionEvaluator
from harness_plugins.evaluators.separability import SeparabilityEvaluator


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty TORCH_HOME, and no downloads."""

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


class TestReconstruction(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return ReconstructionEvaluator()


class TestReconstructionOnVectors(EvaluatorContract):
    @pytest.fixture(scope="class")
    @classmethod
    def eval_data(cls, tmp_path_factory: pytest.TempPathFactory) -> EvalData:
        return make_eval_data(tmp_path_factory.mktemp("eval-cache"), images=False)

    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return ReconstructionEvaluator(batch_size=50)


class TestPriorFit(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return PriorFitEvaluator(samples=100)


class TestFIDWithTheClassifierExtractor(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return FIDEvaluator(extractor="classifier", samples=64, batch_size=32)


class TestFIDWithoutInceptionWeights(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return FIDEvaluator(samples=64)


class TestInceptionScoreWithoutInceptionWeights(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return InceptionScoreEvaluator(samples=64, splits=2)


class TestSeparability(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return SeparabilityEvaluator(samples=200, batch_size=100)


class TestCoverage(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return CoverageEvaluator(samples=200, batch_size=100)


class TestFeatureDiversity(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return FeatureDiversityEvaluator(pairs=50)


class TestLPIPSDiversityWithStandInWeights(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        path = backbone_path("squeeze")  # under the temporary TORCH_HOME
        path.parent.mkdir(parents=True)
        torch.manual_seed(0)
        torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
        return LPIPSDiversityEvaluator(pairs=20, net="squeeze", batch_size=10)


class TestLPIPSDiversityWithoutWeights(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return LPIPSDiversityEvaluator(pairs=20)
