"""``EvaluatorContract`` and the tiny model and data it evaluates (``make_trained_model``, ``make_eval_data``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from harness.api import (
    DataSplit,
    EvalData,
    Evaluator,
    GaussianPosterior,
    PluginUnavailable,
    Prior,
    Regularizer,
    TrainedModel,
    as_float,
)

from harness.testing.support import _StandardNormal


def make_eval_data(cache_dir: Path, images: bool = True, n_train: int = 256, n_test: int = 128) -> EvalData:
    """A tiny labelled dataset as evaluators receive it: 8×8 grayscale uint8 images of 4 classes (one bright quadrant
    each), or float32 2-D points from 4 blobs when ``images`` is False."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> DataSplit:
        labels = torch.randint(0, 4, (n,), generator=g)
        if images:
            x = 30 * torch.rand(n, 1, 8, 8, generator=g)
            for k in range(4):
                rows, cols = slice(4 * (k // 2), 4 * (k // 2) + 4), slice(4 * (k % 2), 4 * (k % 2) + 4)
                x[labels == k, :, rows, cols] += 200
            data = x.round().to(torch.uint8)
        else:
            centres = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
            data = centres[labels] + 0.3 * torch.randn(n, 2, generator=g)
        return DataSplit(data, labels, "class", ("0", "1", "2", "3"))

    train, test = split(n_train), split(n_test)
    return EvalData("contract-images" if images else "contract-points", {}, train, test, Path(cache_dir))


class _KL(Regularizer):
    name = "contract-kl"

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        closed = prior.analytic_kl(posterior, cond)
        return closed if closed is not None else posterior.log_prob(z) - prior.log_prob(z, cond)


def make_trained_model(
    data: EvalData, workdir: Path, prior: Prior | None = None, latent_dim: int = 3, steps: int = 200, seed: int = 0
) -> TrainedModel:
    """A small MLP VAE trained for ``steps`` steps with the harness's own training step on ``data.train``."""
    from harness.model.likelihoods import build_likelihood
    from harness.model.train import Model, training_step

    torch.manual_seed(seed)
    shape = tuple(data.train.x.shape[1:])
    flat = math.prod(shape)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.SiLU(), nn.Linear(32, 2 * latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 32), nn.SiLU(), nn.Linear(32, flat), nn.Unflatten(1, shape))
    prior = prior if prior is not None else _StandardNormal(latent_dim)
    likelihood = build_likelihood("bernoulli", 1.0) if data.train.is_image else build_likelihood("gaussian", 0.1)
    model = Model(encoder, decoder, likelihood, prior, _KL(), lr=3e-3)
    model.train(True)
    for _ in range(steps):
        idx = torch.randint(0, len(data.train), (64,))
        training_step(model, as_float(data.train.x[idx]), beta=1.0)
    model.train(False)
    if prior.post_hoc:
        with torch.no_grad():
            prior.fit_post_hoc(encoder(as_float(data.train.x)).chunk(2, dim=-1)[0])
    return TrainedModel(encoder, decoder, prior, likelihood.mean, latent_dim, shape, torch.device("cpu"), seed, workdir)


class EvaluatorContract:
    """What the harness relies on from an ``Evaluator``. Provide an ``evaluator`` fixture (a new instance).

    ``eval_data`` and ``trained_model`` (built once per test class) default to ``make_eval_data`` and
    ``make_trained_model``: a small VAE trained on tiny labelled 8×8 images. An evaluator whose ``check_available``
    raises ``PluginUnavailable`` here has its evaluation checks skipped with that message.
    """

    # Class-scoped fixtures are classmethods: pytest deprecates instance-method ones (removed in pytest 10).
    @pytest.fixture(scope="class")
    @classmethod
    def eval_data(cls, tmp_path_factory: pytest.TempPathFactory) -> EvalData:
        return make_eval_data(tmp_path_factory.mktemp("eval-cache"))

    @pytest.fixture(scope="class")
    @classmethod
    def trained_model(cls, eval_data: EvalData, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
        return make_trained_model(eval_data, tmp_path_factory.mktemp("cell"))

    def _evaluate(self, evaluator: Evaluator, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        try:
            evaluator.check_available()
        except PluginUnavailable as exc:
            pytest.skip(f"unavailable here: {exc.message}")
        torch.manual_seed(model.seed)  # as the harness calls it
        with torch.inference_mode():
            return evaluator.evaluate(model, data)

    def test_declares_a_name_and_its_metrics(self, evaluator: Evaluator) -> None:
        assert isinstance(evaluator, Evaluator), f"{type(evaluator).__name__} is not a harness.Evaluator"
        assert isinstance(type(evaluator).name, str) and type(evaluator).name, "set the class attribute `name`"
        metrics = type(evaluator).metrics
        assert isinstance(metrics, Mapping) and metrics, "declare `metrics`: {key: 'min' | 'max'}"
        for key, direction in metrics.items():
            assert isinstance(key, str), f"metric key {key!r} is not a str"
            assert direction in ("min", "max"), f"metric {key!r}: direction {direction!r} is not 'min' or 'max'"

    def test_check_available_raises_only_plugin_unavailable(self, evaluator: Evaluator) -> None:
        try:
            evaluator.check_available()
        except PluginUnavailable as exc:
            assert isinstance(exc.message, str) and exc.message, "PluginUnavailable needs a message"
        except Exception as exc:  # noqa: BLE001 - the point of the check
            pytest.fail(f"check_available() raised {type(exc).__name__}: {exc}; raise harness.PluginUnavailable")

    def test_evaluate_returns_declared_finite_floats(
        self, evaluator: Evaluator, trained_model: TrainedModel, eval_data: EvalData
    ) -> None:
        result = self._evaluate(evaluator, trained_model, eval_data)
        assert isinstance(result, Mapping) and result, "evaluate() must return a non-empty mapping"
        undeclared = set(result) - set(type(evaluator).metrics)
        assert not undeclared, f"evaluate() returned undeclared metrics {sorted(undeclared)}; declare them in `metrics`"
        for key, value in result.items():
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (
                f"metric {key!r} is {type(value).__name__}, not a float (use float(...))"
            )
            assert math.isfinite(value), f"metric {key!r} is not finite: {value}"

    def test_evaluate_is_deterministic_under_a_seed(
        self, evaluator: Evaluator, trained_model: TrainedModel, eval_data: EvalData
    ) -> None:
        first = self._evaluate(evaluator, trained_model, eval_data)
        second = self._evaluate(evaluator, trained_model, eval_data)
        assert first.keys() == second.keys()
        for key in first:
            assert math.isclose(first[key], second[key], rel_tol=1e-9, abs_tol=1e-12), (
                f"metric {key!r} differs between two evaluations under one seed: {first[key]} vs {second[key]}"
            )
