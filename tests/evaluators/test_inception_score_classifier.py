"""The offline Inception Score (``inception_score.extractor: classifier``): its arithmetic is torch-fidelity's on the
same class probabilities, it reads 1 for uninformative predictions and K for K confident, equally used classes, a
one-class sampler scores far below real images, and on the suite's tiny trained model it runs end to end without
Inception weights, recording which classifier measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

from harness import DataSplit, EvalData, Evaluator, TrainedModel, as_float
from harness.testing import EvaluatorContract, make_eval_data, make_trained_model
from harness_plugins.evaluators.classifier import classifier_path
from harness_plugins.evaluators.fidelity import InceptionScoreEvaluator, inception_score_from_probabilities

K = 4  # make_eval_data's classes


def _random_probabilities(n: int, k: int, seed: int = 0) -> Tensor:
    logits = 3 * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return logits.softmax(dim=1)


@pytest.mark.parametrize("splits", [1, 3, 10])
@pytest.mark.parametrize("rng_seed", [None, 7])
def test_score_from_probabilities_equals_torch_fidelitys_isc_on_their_logs(splits, rng_seed):
    # 203 rows: the splits are unequal, so torch-fidelity's i * N // splits boundaries are what is checked.
    probabilities = _random_probabilities(203, 6)
    mean, std = inception_score_from_probabilities(probabilities, splits, rng_seed=rng_seed)
    # log p are logits whose softmax is p: torch-fidelity's own computation on the same probabilities.
    shuffle = rng_seed is not None
    direct = isc_features_to_metric(probabilities.log(), splits, shuffle=shuffle, rng_seed=rng_seed or 0)
    assert mean == pytest.approx(direct[KEY_METRIC_ISC_MEAN], rel=1e-6)
    assert std == pytest.approx(direct[KEY_METRIC_ISC_STD], rel=1e-6, abs=1e-9)


def test_shuffling_by_seed_undoes_a_class_sorted_sample_order():
    # Samples sorted by class (as a conditional model's, one per sorted test condition): unshuffled, each of the two
    # splits sees two of the four classes and scores 2; shuffled, each sees all four.
    confident = torch.eye(K, dtype=torch.float64).repeat_interleave(100, dim=0)
    assert inception_score_from_probabilities(confident, 2)[0] == pytest.approx(2.0)
    assert inception_score_from_probabilities(confident, 2, rng_seed=0)[0] == pytest.approx(K, rel=0.02)


def test_uniform_predictions_score_one():
    mean, std = inception_score_from_probabilities(torch.full((100, 10), 0.1), splits=5, rng_seed=0)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_k_confident_equally_used_classes_score_k_and_exact_zeros_stay_finite():
    one_hot = torch.eye(K).repeat(25, 1)  # every split of 4 consecutive blocks holds each class equally often
    mean, std = inception_score_from_probabilities(one_hot, splits=5)
    assert mean == pytest.approx(K, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_bad_probabilities_or_splits_name_the_shape_and_splits():
    with pytest.raises(ValueError, match=r"need probabilities \[N, K\] and 1 <= splits <= N, got shape \(3, 2\) "
                                         r"and splits=4"):  # fmt: skip
        inception_score_from_probabilities(torch.full((3, 2), 0.5), splits=4)
    with pytest.raises(ValueError, match=r"got shape \(6,\)"):
        inception_score_from_probabilities(torch.full((6,), 0.5), splits=1)


class _ReplayModel:
    """A model whose prior samples are a fixed image set, handed out in order."""

    def __init__(self, images: Tensor, workdir: Path) -> None:
        self.images, self.workdir = as_float(images), workdir
        self.device, self.seed, self._next = torch.device("cpu"), 0, 0

    def sample(self, n: int) -> Tensor:
        out = self.images[self._next : self._next + n]
        self._next += n
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[EvalData, TrainedModel]:
    data = make_eval_data(tmp_path_factory.mktemp("cache"))
    return data, make_trained_model(data, tmp_path_factory.mktemp("cell"))


def test_classifier_score_of_the_tiny_trained_model_lies_in_one_to_k_and_records_its_classifier(tiny, monkeypatch):
    data, model = tiny
    monkeypatch.setenv("TORCH_HOME", str(model.workdir / "no-inception-here"))
    evaluator = InceptionScoreEvaluator(extractor="classifier", samples=200, splits=4, batch_size=64)
    evaluator.check_available()  # no Inception weights needed
    torch.manual_seed(0)
    with torch.inference_mode():
        score = evaluator.evaluate(model, data)[""]
    assert 1.0 <= score <= K
    details = json.loads((model.workdir / "inception_score-details.json").read_text())
    assert details["extractor"] == "classifier" and details["num_classes"] == K
    assert details["samples"] == 200 and details["splits"] == 4 and details["std"] >= 0
    # No classifier is shipped for this dataset: the one trained for the cell's seed measured.
    assert details["classifier"] == "retrain" and details["classifier_file"] == str(classifier_path(data, seed=0))
    assert len(details["classifier_sha256"]) == 64 and 0 <= details["classifier_test_accuracy"] <= 1


def test_real_test_images_score_near_k_and_a_one_class_sampler_near_one(tiny, tmp_path):
    data, _ = tiny
    one_class = data.test.x[data.test.labels == 0]
    evaluator = InceptionScoreEvaluator(extractor="classifier", samples=len(one_class), splits=1)
    real = InceptionScoreEvaluator(extractor="classifier", samples=len(data.test), splits=1)
    with torch.inference_mode():
        collapsed = evaluator.evaluate(_ReplayModel(one_class, tmp_path), data)[""]
        varied = real.evaluate(_ReplayModel(data.test.x, tmp_path), data)[""]
    assert collapsed < 1.3 and varied > 0.75 * K


def test_attribute_datasets_are_refused_with_the_inception_alternative(tmp_path):
    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    split = DataSplit(images, torch.zeros(8, 1, dtype=torch.long), "attributes", ("smiling",))
    data = EvalData("celeba", {}, split, split, tmp_path)
    evaluator = InceptionScoreEvaluator(extractor="classifier", samples=8, splits=1)
    with pytest.raises(ValueError, match="inception_score.extractor: classifier needs class labels; dataset 'celeba' "
                                         "has attributes\n  use inception_score.extractor: inception"):  # fmt: skip
        evaluator.evaluate(_ReplayModel(images, tmp_path), data)


class TestInceptionScoreWithTheClassifierExtractor(EvaluatorContract):
    @pytest.fixture
    def evaluator(self) -> Evaluator:
        return InceptionScoreEvaluator(extractor="classifier", samples=64, splits=2, batch_size=32)
