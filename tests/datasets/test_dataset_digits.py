from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from harness import Dataset
from harness_plugins.datasets import digits
from harness_plugins.datasets.digits import Digits


def _rows(x: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, ...]]:
    """Each image with its label as one sortable tuple, to compare splits with the source as multisets."""
    flat = torch.cat([x.reshape(len(x), -1).long(), labels[:, None]], dim=1)
    return sorted(map(tuple, flat.tolist()))


def test_digits_registers_under_its_yaml_name() -> None:
    registered: list[type[Dataset]] = []
    digits.harness_register_datasets(registered.append)
    assert [cls.name for cls in registered] == ["digits"]


def test_digits_is_always_available() -> None:
    Digits().check_available()


def test_digits_splits_1797_images_80_20_stratified() -> None:
    ds = Digits()
    train, test = ds.load("train"), ds.load("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.x.dtype == torch.uint8 and train.x.shape == (1437, 1, 8, 8)
    assert train.labels is not None and test.labels is not None
    assert train.labels.dtype == torch.int64 and train.labels.shape == (1437,)
    assert train.label_kind == "class" and train.label_names == tuple("0123456789")
    total = np.bincount(load_digits().target, minlength=10)
    # Stratified: each class holds its 20 % share of the test split to within one image.
    assert np.all(np.abs(torch.bincount(test.labels, minlength=10).numpy() - 0.2 * total) <= 1)


def test_digits_holds_every_sklearn_image_once_scaled_from_0_16_to_0_255() -> None:
    ds = Digits()
    train, test = ds.load("train"), ds.load("test")
    assert train.labels is not None and test.labels is not None
    bunch = load_digits()
    expected = torch.from_numpy(np.rint(bunch.images * 255 / 16).astype(np.uint8))
    assert _rows(torch.cat([train.x, test.x]), torch.cat([train.labels, test.labels])) == _rows(
        expected, torch.from_numpy(bunch.target)
    )
    assert int(train.x.max()) == 255


def test_digits_split_is_the_same_for_every_instance() -> None:
    first, second = Digits().load("test"), Digits().load("test")
    assert torch.equal(first.x, second.x) and torch.equal(first.labels, second.labels)


def test_digits_test_fraction_sets_the_test_size() -> None:
    assert len(Digits(test_fraction=0.5).load("test")) == 899


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_digits_rejects_a_test_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        Digits(test_fraction=fraction)
