"""Linear separability: the entropy, the score on known-separable and XOR labels, the confident-half pruning,
Z_0 through ``to_base``, and a whole run with the harness classifier."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from harness import Prior, TrainedModel
from harness.cli import main
from harness.store import Store
from harness_plugins.evaluators import classifier as classifier_module
from harness_plugins.evaluators.separability import (
    SeparabilityEvaluator,
    attribute_entropies,
    conditional_entropy,
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

    def probabilities(self, x: Tensor) -> Tensor:
        return torch.sigmoid(4.0 * (x[:, 1] - 1.0))[:, None]


def _evaluate(prior: Prior, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    # The decoder is the identity on 2-d vectors, so the stand-in classifier reads the latent itself.
    monkeypatch.setattr(classifier_module, "load_or_train_classifier", lambda data, seed, device: HalfPlaneClassifier())
    model = TrainedModel(nn.Identity(), nn.Identity(), prior, nn.Identity(), 2, (2,), torch.device("cpu"), 0, None)
    torch.manual_seed(0)
    with torch.inference_mode():
        return dict(SeparabilityEvaluator(samples=2000, batch_size=300).evaluate(model, None))  # type: ignore[arg-type]


def test_gaussian_prior_reports_equal_z0_and_zt(monkeypatch):
    result = _evaluate(GaussianPrior(latent_dim=2), monkeypatch)
    assert result.keys() == {"zT", "z0"}
    assert result["zT"] == result["z0"] < 1.05


def test_z0_is_measured_after_to_base(monkeypatch):
    # zT2 > 1 is a hyperplane in Z_T but the parabola b > 1 - a² in Z_0.
    result = _evaluate(ShearPrior(latent_dim=2), monkeypatch)
    assert result["zT"] < 1.05 < result["z0"]


def test_a_prior_without_to_base_reports_only_zt(monkeypatch):
    assert _evaluate(StandardNormal(latent_dim=2), monkeypatch).keys() == {"zT"}


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
    assert result["status"] == "done", result.get("reason")
    metrics = result["metrics"]
    assert metrics["separability.zT"] == metrics["separability.z0"]
    # Ten one-against-the-rest attributes: between perfectly separable (1) and no better than chance (2 ** 10).
    assert 1.0 <= metrics["separability.zT"] < 2.0**10
