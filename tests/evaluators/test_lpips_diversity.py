"""LPIPS diversity: the offline error (directly and through the CLI, before training), the real loading path with
stand-in AlexNet weights in a temporary TORCH_HOME, and the metric on identical and random samples."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lpips
import pytest
import torch
import torchvision
from torch import Tensor, nn

from harness import PluginUnavailable, Prior, TrainedModel
from harness.cli import main
from harness_plugins.evaluators.lpips_diversity import LPIPSDiversityEvaluator, load_lpips, lpips_inputs
from harness_plugins.priors.gaussian import GaussianPrior

from conftest import write_config

#: torchvision's name for AlexNet_Weights.IMAGENET1K_V1, the trunk lpips loads by default.
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong file name or folder would make torchvision download the weights: fail instead."""

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def stand_in_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """A TORCH_HOME holding a randomly initialised AlexNet under torchvision's file name, and its weights."""
    home = tmp_path_factory.mktemp("torch-home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    torch.save(state, home / "hub" / "checkpoints" / ALEXNET_FILE)
    return home, state


@pytest.fixture
def with_weights(stand_in_home: tuple[Path, dict[str, Tensor]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Tensor]:
    monkeypatch.setenv("TORCH_HOME", str(stand_in_home[0]))
    return stand_in_home[1]


def test_without_the_backbone_file_the_error_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PluginUnavailable) as caught:
        LPIPSDiversityEvaluator().check_available()
    folder = tmp_path / "hub" / "checkpoints"
    assert caught.value.message == (
        f"the LPIPS alex backbone weights are not available offline: no {ALEXNET_FILE} in {folder}"
    )
    assert caught.value.fix is not None and ALEXNET_FILE in caught.value.fix and "feature_diversity" in caught.value.fix


def test_the_cli_refuses_before_training_without_the_backbone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    cfg = write_config(tmp_path / "b.yaml", evaluators={"lpips_diversity": {}}, primary_metric="lpips_diversity")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    error, fix = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: {cfg}: benchmarks.tiny.evaluators.lpips_diversity: the LPIPS alex backbone")
    assert str(tmp_path / "empty-home" / "hub" / "checkpoints") in error and ALEXNET_FILE in error
    assert fix.startswith("  Place ")
    assert not (tmp_path / "out" / "cells").exists()


def test_the_stand_in_trunk_is_what_lpips_loads(with_weights):
    metric = load_lpips("alex")
    torch.testing.assert_close(metric.net.slice1[0].weight, with_weights["features.0.weight"], rtol=0, atol=0)


def test_images_are_three_channels_in_minus_one_to_one_with_short_side_32():
    small = lpips_inputs(torch.rand(2, 1, 8, 8))
    assert small.shape == (2, 3, 32, 32) and small.min() >= -1 and small.max() <= 1
    assert lpips_inputs(torch.rand(2, 1, 28, 28)).shape == (2, 3, 32, 32)
    large = torch.rand(2, 3, 40, 48)
    torch.testing.assert_close(lpips_inputs(large), large * 2 - 1)


class PointPrior(Prior):
    """Every sample is the same code: no diversity at all."""

    name = "point"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.ones(n, self.latent_dim)


def _diversity(prior: Prior) -> float:
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 8, 8)))
    model = TrainedModel(nn.Identity(), decoder, prior, torch.sigmoid, 4, (1, 8, 8), torch.device("cpu"), 0, None)
    with torch.inference_mode():
        return LPIPSDiversityEvaluator(pairs=24, batch_size=10).evaluate(model, None)[""]  # type: ignore[arg-type]


def test_identical_samples_have_zero_diversity(with_weights):
    assert _diversity(PointPrior(latent_dim=4)) == pytest.approx(0.0, abs=1e-7)


def test_random_samples_have_a_finite_positive_diversity(with_weights):
    value = _diversity(GaussianPrior(latent_dim=4))
    assert math.isfinite(value) and value > 0


class ConditionalDecoder(nn.Module):
    """p(x | y, z) for 8×8 images: a linear map of z and the flattened condition."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 + 64, 64), nn.Unflatten(1, (1, 8, 8)))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([z, y.flatten(1)], dim=1))


def _conditional_model(prior: Prior) -> TrainedModel:
    torch.manual_seed(0)
    conditions = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    return TrainedModel(nn.Identity(), ConditionalDecoder(), prior, torch.sigmoid, 4, (1, 8, 8),
                        torch.device("cpu"), 0, None, conditions)  # fmt: skip


def test_conditional_diversity_equals_lpips_between_two_samples_per_condition(with_weights):
    prior = GaussianPrior(latent_dim=4, condition_shape=(1, 8, 8))
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = _conditional_model(prior)
    evaluator = LPIPSDiversityEvaluator(pairs=24, batch_size=10, conditions=5)
    torch.manual_seed(1)
    with torch.inference_mode():
        got = evaluator.evaluate(model, None)[""]  # type: ignore[arg-type]

    # The same draws, scored by the lpips package directly: pair i is two samples for test condition i mod 5.
    def as_lpips_input(images: Tensor) -> Tensor:
        rgb = images.repeat(1, 3, 1, 1)
        return torch.nn.functional.interpolate(rgb, size=(32, 32), mode="bilinear", align_corners=False) * 2 - 1

    # Built after seeding, as the evaluator builds it: building AlexNet draws its (then replaced) initial weights.
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        direct = lpips.LPIPS(net="alex", verbose=False)
    distances = []
    with torch.inference_mode():
        for start in (0, 10, 20):
            n = min(10, 24 - start)
            cond = model.conditions[(torch.arange(start, start + n) % 5)]
            first, second = model.sample(n, cond), model.sample(n, cond)
            distances.append(direct(as_lpips_input(first), as_lpips_input(second)).flatten())
    assert got == pytest.approx(float(torch.cat(distances).mean()), abs=1e-6)
    assert got > 0


def test_a_decoder_that_ignores_z_has_zero_conditional_diversity_though_conditions_differ(with_weights):
    model = _conditional_model(PointPrior(latent_dim=4))
    with torch.inference_mode():
        value = LPIPSDiversityEvaluator(pairs=12, batch_size=5, conditions=6).evaluate(model, None)[""]  # type: ignore[arg-type]
    assert value == pytest.approx(0.0, abs=1e-7)
