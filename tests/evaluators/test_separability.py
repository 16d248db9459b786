"""Linear separability: the entropy; per attribute, the score on known-separable and XOR labels and the
confident-half pruning; for classes, one categorical label (separable blobs ≈ 1, labels independent of z ≈ K, a
one-class sampler no better than either); Z_0 through ``to_base``, the details file, and a whole run with the
harness classifier."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from harness import Prior, TrainedModel
from harness.cli import main
from harness.config import ConfigError
from harness.options import validate_options
from harness.run.store import Store
from harness_plugins.evaluators import classifier as classifier_module
from harness_plugins.evaluators.separability import (
    SeparabilityEvaluator,
    attribute_entropies,
    categorical_separability,
    conditional_entropy,
    most_confident_half,
    separability_score,
)
from harness_plugins.priors.gaussian import GaussianPrior

from conftest import write_config


def _latents(n: int = 2000, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_conditional_entropy_matches_a_hand_computation():
    # Rows: SVM says 0 (40 points: 30 labelled 0, 10 labelled 1) or 1 (60 points: 5 and 55).
    table = np.array([[30, 10], [5, 55]])
    by_hand = 0.4 * -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) + 0.6 * -(
        (5 / 60) * math.log2(5 / 60) + (55 / 60) * math.log2(55 / 60)
    )
    assert conditional_entropy(table) == pytest.approx(by_hand, rel=1e-12)
    assert conditional_entropy(np.array([[50, 0], [0, 50]])) == 0.0
    assert conditional_entropy(np.array([[25, 25], [25, 25]])) == pytest.approx(1.0)


def test_labels_linear_in_z_score_about_one():
    z = _latents()
    directions = np.random.default_rng(1).standard_normal((4, 3))
    assert separability_score(z, _sigmoid(3.0 * z @ directions)) < 1.05


def test_xor_labels_are_not_linearly_separable():
    z = _latents()
    assert separability_score(z, _sigmoid(3.0 * z[:, 0] * z[:, 1])[:, None]) > 1.5


def test_only_the_most_confident_half_is_fitted():
    # The confident half is linear in z; the unsure half (p within 0.05 of 0.5) is XOR noise a line cannot fit.
    z = _latents()
    linear = _sigmoid(5.0 * z[:, 0] + np.sign(z[:, 0]) * 3.0)
    noise = 0.5 + 0.05 * np.sign(z[:, 1] * z[:, 2]) * np.abs(np.tanh(z[:, 3]))
    p = np.where(np.arange(len(z)) % 2 == 0, linear, noise)
    assert separability_score(z, p[:, None]) < 1.05


def test_an_attribute_with_one_kept_label_adds_no_entropy():
    z = _latents(n=200)
    p = np.stack([np.full(200, 0.9), _sigmoid(3.0 * z[:, 0] * z[:, 1])], axis=1)
    entropies = attribute_entropies(z, p)
    assert entropies[0] == 0.0 and entropies[1] > 0.5


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _class_probabilities(labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """A softmax whose argmax is ``labels``, with a confidence that varies from sample to sample."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((len(labels), num_classes))
    # Above the largest other logit, so the argmax is the label in every row, even in thousands of rows.
    logits[np.arange(len(labels)), labels] = logits.max(axis=1) + 2.0 + 3.0 * rng.random(len(labels))
    return _softmax(logits)


def _blobs(n: int = 800, num_classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each class a tight blob on a circle in 2-d: every class is linearly separable from the rest."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    angles = 2 * np.pi * labels / num_classes
    z = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1) + 0.3 * rng.standard_normal((n, 2))
    return z, labels


def test_classes_in_separable_regions_score_about_one():
    z, labels = _blobs()
    measured = categorical_separability(z, _class_probabilities(labels, 4))
    assert measured.score < 1.05
    assert measured.kept == sum((n + 1) // 2 for n in np.bincount(labels)) and measured.distinct_labels == 4


def test_class_labels_independent_of_z_score_about_the_number_of_classes():
    # H(Y | X) ≈ log2 4 = 2 bits; an SVM fitted to noise explains a little by chance.
    z = _latents(n=2000)
    labels = np.random.default_rng(1).integers(0, 4, len(z))
    assert 3.8 < categorical_separability(z, _class_probabilities(labels, 4, seed=2)).score <= 4.0 + 1e-9


def test_class_confidence_is_the_softmax_maximum_not_one_against_the_rest():
    # Half the samples are confident class-0/class-1 blobs, half near-uniform softmaxes of labels 2 and 3 that sit
    # at random: a confident-negative ranking would keep the latter; the softmax maximum keeps the former.
    z, labels = _blobs(n=800, num_classes=2)
    probs = np.zeros((800, 4))
    probs[np.arange(800), labels] = 0.97
    probs[probs == 0] = 0.01
    unsure = np.arange(800) % 2 == 1
    probs[unsure] = [0.24, 0.24, 0.26, 0.26]
    probs[unsure & (labels == 1)] = [0.24, 0.24, 0.27, 0.25]
    z[unsure] = np.random.default_rng(2).standard_normal((unsure.sum(), 2))
    measured = categorical_separability(z, probs, keep="overall")
    assert measured.distinct_labels == 2
    assert measured.score == pytest.approx(2.0, abs=0.05)  # separable (2 ** 0) times 4 classes / 2 kept


def _unevenly_confident(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A softmax over 4 classes whose argmax is ``labels``: sure of classes 0-2 (maximum 0.9-1.0), unsure of class 3
    (0.4-0.5), as a Fashion-MNIST classifier is of trousers and of shirts."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    confidence = np.where(labels == 3, 0.4 + 0.1 * rng.random(n), 0.9 + 0.1 * rng.random(n))
    probs = np.tile(((1.0 - confidence) / 3.0)[:, None], (1, 4))
    probs[np.arange(n), labels] = confidence
    return probs


def test_the_overall_confident_half_drops_the_class_the_classifier_is_unsure_of():
    labels = np.random.default_rng(1).integers(0, 4, 1000)
    assert 3 not in labels[most_confident_half(_unevenly_confident(labels), "overall")]


def test_the_per_label_confident_half_keeps_the_top_half_of_every_emitted_class():
    labels = np.random.default_rng(1).integers(0, 4, 1000)
    probs = _unevenly_confident(labels)
    kept = most_confident_half(probs, "per-label")
    dropped = np.setdiff1d(np.arange(len(labels)), kept)
    confidence = probs.max(axis=1)
    for k in range(4):
        assert (labels[kept] == k).sum() == ((labels == k).sum() + 1) // 2
        # Within a class, every kept sample is at least as confident as every dropped one.
        assert confidence[kept][labels[kept] == k].min() >= confidence[dropped][labels[dropped] == k].max()
    assert len(kept) == pytest.approx(len(labels) / 2, abs=4)


def test_per_label_keep_measures_every_class_where_the_overall_half_loses_one():
    z, labels = _blobs(n=1000)
    probs = _unevenly_confident(labels)
    per_label = categorical_separability(z, probs)
    overall = categorical_separability(z, probs, keep="overall")
    assert per_label.distinct_labels == 4 and per_label.score < 1.05
    # Separable too, but class 3 is missing from the kept half and counted as fully confused: 2 ** 0 · 4 / 3.
    assert overall.distinct_labels == 3 and overall.score == pytest.approx(4 / 3, abs=0.05)


def test_a_one_class_sampler_scores_no_better_than_any_sampler_covering_all_classes():
    z, labels = _blobs()
    collapsed = categorical_separability(z, _class_probabilities(np.zeros_like(labels), 4))
    separable = categorical_separability(z, _class_probabilities(labels, 4))
    noise = categorical_separability(_latents(n=800, seed=3), _class_probabilities(labels, 4))
    assert collapsed.distinct_labels == 1
    # The metric's worst value: what labels independent of z get, and "min" is better.
    assert collapsed.score == 4.0
    assert collapsed.score >= noise.score > separable.score


class ShearPrior(Prior):
    """zT = (a, b + a²) for z0 = (a, b) ~ N(0, I): an invertible prior that bends straight lines of Z_T in Z_0."""

    name = "shear"
    invertible = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        a, b = torch.randn(n, 2).unbind(dim=1)
        return torch.stack([a, b + a**2], dim=1)

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return torch.stack([z[:, 0], z[:, 1] - z[:, 0] ** 2], dim=1)


class StandardNormal(Prior):
    """N(0, I) without ``to_base``: a prior with no Z_0."""

    name = "standard-normal"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim)


class HalfPlaneClassifier(nn.Module):
    """Stands in for the harness classifier: attribute present where x2 > 1, a hyperplane in Z_T."""

    label_kind = "attributes"

    def probabilities(self, x: Tensor) -> Tensor:
        return torch.sigmoid(4.0 * (x[:, 1] - 1.0))[:, None]


class OneClassClassifier(nn.Module):
    """Stands in for a class classifier on a mode-collapsed sampler: every sample is confidently class 0 of 4."""

    label_kind = "class"

    def probabilities(self, x: Tensor) -> Tensor:
        logits = torch.zeros(len(x), 4)
        logits[:, 0] = 3.0 + x[:, 0].tanh()
        return logits.softmax(dim=1)


def _evaluate(
    prior: Prior, monkeypatch: pytest.MonkeyPatch, workdir, classifier: nn.Module | None = None, **options
) -> dict[str, float]:
    # The decoder is the identity on 2-d vectors, so the stand-in classifier reads the latent itself.
    stand_in = classifier if classifier is not None else HalfPlaneClassifier()
    monkeypatch.setattr(classifier_module, "load_or_train_classifier", lambda data, seed, device: stand_in)
    model = TrainedModel(nn.Identity(), nn.Identity(), prior, nn.Identity(), 2, (2,), torch.device("cpu"), 0, workdir)
    torch.manual_seed(0)
    evaluator = SeparabilityEvaluator(samples=2000, batch_size=300, **options)
    with torch.inference_mode():
        return dict(evaluator.evaluate(model, None))  # type: ignore[arg-type]


def test_gaussian_prior_reports_equal_z0_and_zt(monkeypatch, tmp_path):
    result = _evaluate(GaussianPrior(latent_dim=2), monkeypatch, tmp_path)
    assert result.keys() == {"zT", "z0"}
    assert result["zT"] == result["z0"] < 1.05


def test_z0_is_measured_after_to_base(monkeypatch, tmp_path):
    # zT2 > 1 is a hyperplane in Z_T but the parabola b > 1 - a² in Z_0.
    result = _evaluate(ShearPrior(latent_dim=2), monkeypatch, tmp_path)
    assert result["zT"] < 1.05 < result["z0"]


def test_a_prior_without_to_base_reports_only_zt(monkeypatch, tmp_path):
    assert _evaluate(StandardNormal(latent_dim=2), monkeypatch, tmp_path).keys() == {"zT"}


def test_a_collapsed_class_sampler_scores_the_worst_and_the_details_say_why(monkeypatch, tmp_path):
    result = _evaluate(GaussianPrior(latent_dim=2), monkeypatch, tmp_path, OneClassClassifier())
    assert result == {"zT": 4.0, "z0": 4.0}
    details = json.loads((tmp_path / "separability-details.json").read_text())
    assert details["labels"] == "categorical" and details["keep"] == "per-label"
    assert details["kept"] == {"zT": 1000, "z0": 1000}
    assert details["distinct_labels"] == {"zT": 1, "z0": 1}


def test_one_vs_rest_keeps_the_old_score_reachable(monkeypatch, tmp_path):
    # The old procedure: each class a binary attribute with one kept label, so nothing adds entropy: "perfect".
    result = _evaluate(StandardNormal(latent_dim=2), monkeypatch, tmp_path, OneClassClassifier(), labels="one-vs-rest")
    assert result == {"zT": 1.0}
    details = json.loads((tmp_path / "separability-details.json").read_text())
    assert details["labels"] == "per-attribute" and details["distinct_labels"] == {"zT": [1, 1, 1, 1]}


def test_labels_is_a_resolved_option_so_categorical_cells_get_new_ids():
    # Cells hash their resolved evaluator options: a new option with a default changes every separability cell id.
    assert validate_options(SeparabilityEvaluator, {}, "e")["labels"] == "auto"
    # So is the keep rule: the per-label default gave every categorical cell a new id again.
    assert validate_options(SeparabilityEvaluator, {}, "e")["keep"] == "per-label"
    with pytest.raises(ConfigError, match="'auto' or 'one-vs-rest'"):
        validate_options(SeparabilityEvaluator, {"labels": "per-class"}, "e")


def test_a_digits_run_reports_both_spaces_with_the_harness_classifier(tmp_path, monkeypatch):
    # The real classifier, trained for 2 epochs instead of 15 to keep the test fast.
    train_classifier = classifier_module.load_or_train_classifier
    monkeypatch.setattr(classifier_module, "load_or_train_classifier", functools.partial(train_classifier, epochs=2))
    cfg = write_config(
        tmp_path / "b.yaml",
        regularizers=["kl"],
        sample_grid=0,
        evaluators={"separability": {"samples": 1000}},
        primary_metric="separability.zT",
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 0
    (result,) = Store(tmp_path / "out").results()
    assert result.status == "done" and result.metrics is not None, result.reason
    metrics = result.metrics
    assert metrics["separability.zT"] == metrics["separability.z0"]
    # One categorical label of ten classes: between perfectly separable (1) and no better than chance (10).
    assert 1.0 <= metrics["separability.zT"] <= 10.0
    (cell,) = (tmp_path / "out" / "cells").iterdir()
    details = json.loads((cell / "separability-details.json").read_text())
    # Half of each predicted class, rounded up: 500 plus at most one per class.
    assert details["labels"] == "categorical" and 500 <= details["kept"]["zT"] <= 510
    assert details["distinct_labels"]["zT"] >= 2
