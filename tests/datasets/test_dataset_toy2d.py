from __future__ import annotations

import math

import pytest
import torch

from harness import Dataset
from harness_plugins.datasets import toy2d
from harness_plugins.datasets.toy2d import EightGaussians, Moons, Rings

TOY_SETS = [Moons, EightGaussians, Rings]


def test_toy2d_registers_the_three_sets_under_their_yaml_names() -> None:
    registered: list[type[Dataset]] = []
    toy2d.harness_register_datasets(registered.append)
    assert [cls.name for cls in registered] == ["moons", "eight-gaussians", "rings"]


@pytest.mark.parametrize("cls", TOY_SETS)
def test_toy_set_returns_float32_points_and_class_labels_of_every_component(cls: type[toy2d._Toy2D]) -> None:
    ds = cls(n_train=3000, n_test=500)
    ds.check_available()
    for split, n in (("train", 3000), ("test", 500)):
        data = ds.load(split)
        assert data.x.dtype == torch.float32 and data.x.shape == (n, 2)
        assert data.labels is not None and data.labels.dtype == torch.int64 and data.labels.shape == (n,)
        assert data.label_kind == "class" and data.label_names is not None
        # Every component is drawn, and no label falls outside the named ones.
        assert set(data.labels.tolist()) == set(range(len(data.label_names)))
        assert torch.isfinite(data.x).all()


@pytest.mark.parametrize("cls", TOY_SETS)
def test_toy_set_is_deterministic_with_distinct_train_and_test_draws(cls: type[toy2d._Toy2D]) -> None:
    first, second = cls(n_train=200, n_test=200), cls(n_train=200, n_test=200)
    assert torch.equal(first.load("train").x, second.load("train").x)
    assert torch.equal(first.load("test").labels, second.load("test").labels)
    assert not torch.equal(first.load("train").x, first.load("test").x)


def test_eight_gaussians_points_sit_near_the_center_their_label_names() -> None:
    data = EightGaussians(n_train=2000, std=0.1).load("train")
    angles = data.labels.double() * (2 * math.pi / 8)
    centers = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    distance = (data.x.double() - centers).norm(dim=1)
    assert distance.max() < 0.6  # six standard deviations
    assert 0.08 < distance.mean() / math.sqrt(math.pi / 2) < 0.12  # the Rayleigh mean of std 0.1


def test_rings_points_sit_on_the_radius_their_label_names() -> None:
    data = Rings(n_train=2000, noise=0.02).load("train")
    radii = torch.tensor(Rings.radii, dtype=torch.float64)[data.labels]
    assert (data.x.double().norm(dim=1) - radii).abs().max() < 0.12


def test_moons_noise_option_controls_the_spread() -> None:
    exact, noisy = Moons(n_train=500, noise=0.0).load("train"), Moons(n_train=500, noise=0.3).load("train")
    assert torch.equal(exact.labels, noisy.labels)
    # Without noise every point lies on a half circle of radius 2 (after the ×2 scaling).
    centers = torch.tensor([[-1.0, -0.2], [1.0, 0.8]])[exact.labels]
    assert torch.allclose((exact.x - centers).norm(dim=1), torch.full((500,), 2.0), atol=1e-5)
    assert not torch.allclose(exact.x, noisy.x, atol=0.1)
