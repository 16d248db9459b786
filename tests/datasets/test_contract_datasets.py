"""Every built-in dataset passes ``harness.testing.DatasetContract``: the embedded and generated ones as they are,
the torchvision ones on tiny files written in torchvision's layout (and, without files, through DatasetUnavailable)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torchvision.datasets.celeba
import torchvision.datasets.cifar

from harness import Dataset
from harness.testing import DatasetContract
from harness_plugins.datasets.digits import Digits
from harness_plugins.datasets.toy2d import EightGaussians, Moons, Rings
from harness_plugins.datasets.torchvision_sets import CIFAR10, MNIST, CelebA, FashionMNIST
from test_dataset_torchvision import _existence_only, _write_celeba, _write_cifar10, _write_idx_set


class TestDigits(DatasetContract):
    @pytest.fixture
    def dataset(self) -> Dataset:
        return Digits()


@pytest.mark.parametrize("cls", [Moons, EightGaussians, Rings])
class TestToy2D(DatasetContract):
    @pytest.fixture
    def dataset(self, cls: type[Dataset]) -> Dataset:
        return cls(n_train=300, n_test=100)


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
class TestIdxFiles(DatasetContract):
    @pytest.fixture
    def dataset(self, cls: type[MNIST], tmp_path: Path) -> Dataset:
        _write_idx_set(tmp_path / cls.tv_class.__name__ / "raw", seed=0)
        return cls(data_root=str(tmp_path))


class TestCIFAR10(DatasetContract):
    @pytest.fixture
    def dataset(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dataset:
        _write_cifar10(tmp_path)
        monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", _existence_only)
        return CIFAR10(data_root=str(tmp_path))


class TestCelebA(DatasetContract):
    @pytest.fixture
    def dataset(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dataset:
        _write_celeba(tmp_path)
        monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", _existence_only)
        return CelebA(data_root=str(tmp_path))


class TestMissingMNIST(DatasetContract):
    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Dataset:
        return MNIST(data_root=str(tmp_path))
