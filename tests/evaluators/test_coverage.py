"""Class coverage: a one-class sampler gets classes=1 and a large KL, a sampler matching the test histogram gets
every class and KL ≈ 0, attribute datasets are skipped. The contract suite runs in ``test_contract_evaluators.py``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from harness import DataSplit, EvalData, Prior, TrainedModel
from harness_plugins.evaluators import classifier as classifier_module
from harness_plugins.evaluators.coverage import CoverageEvaluator, class_kl

K = 4


class ClassPrior(Prior):
    """Draws a class k with probabilities ``weights`` and emits its one-hot vector as the code."""

    name = "class-prior"

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.latent_dim = K
        self.weights = torch.tensor(weights)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return nn.functional.one_hot(torch.multinomial(self.weights, n, replacement=True), K).float()


class ArgmaxClassifier(nn.Module):
    """Stands in for the harness classifier: the decoded vector (the code itself) is the class's one-hot."""

    label_kind = "class"
    num_outputs = K

    def probabilities(self, x: Tensor) -> Tensor:
        return (5.0 * x).softmax(dim=1)


def _test_split(label_kind: str = "class") -> DataSplit:
    labels = torch.arange(400) % K  # a balanced test split
    if label_kind == "attributes":
        return DataSplit(torch.zeros(400, 1, 8, 8, dtype=torch.uint8), labels[:, None] % 2, "attributes", ("a",))
    return DataSplit(torch.zeros(400, 1, 8, 8, dtype=torch.uint8), labels, "class", tuple("0123"))


def _evaluate(weights: list[float], monkeypatch, tmp_path, label_kind: str = "class") -> dict[str, float]:
    monkeypatch.setattr(classifier_module, "load_or_train_classifier", lambda data, seed, device: ArgmaxClassifier())
    prior = ClassPrior(weights)
    model = TrainedModel(nn.Identity(), nn.Identity(), prior, nn.Identity(), K, (K,), torch.device("cpu"), 0, tmp_path)
    split = _test_split(label_kind)
    data = EvalData("stand-in", {}, split, split, tmp_path)
    torch.manual_seed(0)
    with torch.inference_mode():
        return dict(CoverageEvaluator(samples=2000, batch_size=300).evaluate(model, data))


def test_a_one_class_sampler_covers_one_class_at_a_large_kl(monkeypatch, tmp_path):
    result = _evaluate([1.0, 0.0, 0.0, 0.0], monkeypatch, tmp_path)
    assert result["classes"] == 1.0
    # Three quarters of the test mass sit on classes with a pseudo-count of 1/2 in 2000 + 2 samples.
    assert result["kl"] == pytest.approx(0.25 * math.log(0.25 / (2000.5 / 2002)) + 0.75 * math.log(0.25 * 4004))
    assert result["kl"] > 4.0
    details = json.loads((tmp_path / "coverage-details.json").read_text())
    assert details["sample_histogram"] == [2000, 0, 0, 0] and details["test_histogram"] == [100] * 4


def test_a_sampler_matching_the_test_histogram_covers_every_class_at_kl_about_zero(monkeypatch, tmp_path):
    result = _evaluate([0.25] * 4, monkeypatch, tmp_path)
    assert result["classes"] == K
    # Multinomial noise of 2000 samples: about (K - 1) / (2 · 2000) nats.
    assert 0.0 <= result["kl"] < 0.01


def test_kl_is_zero_for_equal_histograms_and_finite_for_a_missing_class():
    assert class_kl(np.array([10, 30]), np.array([100, 300]), smoothing=0.0) == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(class_kl(np.array([10, 30]), np.array([0, 300])))
    # A class the test split lacks costs nothing.
    assert class_kl(np.array([0, 30]), np.array([0, 300])) == pytest.approx(0.0, abs=1e-2)


def test_an_attribute_dataset_is_skipped_with_a_reason(monkeypatch, tmp_path):
    assert _evaluate([0.25] * 4, monkeypatch, tmp_path, label_kind="attributes") == {}
    assert "attributes" in json.loads((tmp_path / "coverage-details.json").read_text())["skipped"]


def test_options_are_bounded():
    with pytest.raises(ValueError, match="samples"):
        CoverageEvaluator(samples=0)
