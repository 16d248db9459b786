"""``DatasetContract``: what the harness relies on from a dataset (splits, dtypes, labels, determinism)."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from torch import Tensor

from harness.api import DataSplit, Dataset, PluginUnavailable



class DatasetContract:
    """What the harness relies on from a ``Dataset``. Provide a ``dataset`` fixture (a new instance).

    A dataset whose ``check_available`` raises ``PluginUnavailable`` here has its loading checks skipped with that
    message (write tiny files in the expected layout in ``tmp_path`` to check the loading code offline).
    """

    def _load(self, dataset: Dataset, split: Literal["train", "test"]) -> DataSplit:
        try:
            dataset.check_available()
        except PluginUnavailable as exc:
            pytest.skip(f"unavailable here: {exc.message}")
        data = dataset.load(split)
        assert isinstance(data, DataSplit), f"load({split!r}) returned {type(data).__name__}, not a harness.DataSplit"
        return data

    def test_declares_a_name(self, dataset: Dataset) -> None:
        assert isinstance(dataset, Dataset), f"{type(dataset).__name__} is not a harness.Dataset"
        assert isinstance(type(dataset).name, str) and type(dataset).name, "set the class attribute `name`"

    def test_check_available_raises_only_plugin_unavailable(self, dataset: Dataset) -> None:
        try:
            dataset.check_available()
        except PluginUnavailable as exc:
            assert isinstance(exc.message, str) and exc.message, "DatasetUnavailable needs a message"
            assert exc.fix is None or isinstance(exc.fix, str)
        except Exception as exc:  # noqa: BLE001 - the point of the check
            pytest.fail(f"check_available() raised {type(exc).__name__}: {exc}; raise harness.DatasetUnavailable")

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_split_holds_uint8_images_or_float32_vectors(
        self, dataset: Dataset, split: Literal["train", "test"]
    ) -> None:
        x = self._load(dataset, split).x
        assert isinstance(x, Tensor) and len(x) >= 1, f"load({split!r}).x must be a non-empty tensor"
        if x.dtype == torch.uint8:
            assert x.dim() == 4, f"images must be uint8 [N, C, H, W], got shape {list(x.shape)}"
        else:
            assert x.dtype == torch.float32 and x.dim() == 2, (
                f"load({split!r}).x must be uint8 [N, C, H, W] or float32 [N, D], got {x.dtype} {list(x.shape)}"
            )
            assert bool(torch.isfinite(x).all()), "vectors must be finite"

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_labels_agree_with_label_kind(self, dataset: Dataset, split: Literal["train", "test"]) -> None:
        data = self._load(dataset, split)
        labels, kind, names = data.labels, data.label_kind, data.label_names
        if labels is None:
            assert kind is None, f"label_kind is {kind!r} but there are no labels"
            return
        assert labels.dtype == torch.int64, f"labels must be int64, got {labels.dtype}"
        assert names is None or (isinstance(names, tuple) and all(isinstance(n, str) for n in names)), (
            "label_names must be a tuple of str"
        )
        if kind == "class":
            assert labels.shape == (len(data),), f"class labels must be [N], got {list(labels.shape)}"
            assert int(labels.min()) >= 0, "class labels must be >= 0"
            if names is not None:
                assert int(labels.max()) < len(names), f"a class label is >= len(label_names) = {len(names)}"
        elif kind == "attributes":
            assert labels.dim() == 2 and labels.shape[0] == len(data), "attribute labels must be [N, A]"
            assert bool(((labels == 0) | (labels == 1)).all()), "attribute labels must be 0 or 1"
            if names is not None:
                assert len(names) == labels.shape[1], "label_names must name every attribute"
        else:
            pytest.fail(f"label_kind is {kind!r}; with labels it must be 'class' or 'attributes'")

    def test_train_and_test_hold_the_same_kind_of_item(self, dataset: Dataset) -> None:
        train, test = self._load(dataset, "train"), self._load(dataset, "test")
        assert train.x.dtype == test.x.dtype and train.x.shape[1:] == test.x.shape[1:], (
            f"train items are {train.x.dtype} {list(train.x.shape[1:])}, test items {test.x.dtype} "
            f"{list(test.x.shape[1:])}"
        )
        assert train.label_kind == test.label_kind and train.label_names == test.label_names

    def test_loading_is_deterministic(self, dataset: Dataset) -> None:
        for split in ("train", "test"):
            first, second = self._load(dataset, split), self._load(dataset, split)
            assert torch.equal(first.x, second.x), f"two loads of {split!r} differ: every run must see the same data"
            assert (first.labels is None) == (second.labels is None)
            if first.labels is not None:
                assert torch.equal(first.labels, second.labels), f"two loads of {split!r} give different labels"

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_a_condition_has_one_row_per_item_and_matches_the_declaration(
        self, dataset: Dataset, split: Literal["train", "test"]
    ) -> None:
        data = self._load(dataset, split)
        if data.cond is None:
            assert not type(dataset).provides_condition, "provides_condition is True but the split has no cond"
            return
        assert type(dataset).provides_condition, "the split has a cond: declare provides_condition = True"
        cond = data.cond
        assert len(cond) == len(data), f"cond has {len(cond)} rows for {len(data)} items"
        image = cond.dtype == torch.uint8 and cond.dim() == 4
        vector = cond.dtype == torch.float32 and cond.dim() == 2
        assert image or vector, f"cond must be uint8 [N, C, H, W] or float32 [N, K], got {cond.dtype} {list(cond.shape)}"
        other = self._load(dataset, "test" if split == "train" else "train").cond
        assert other is not None and other.shape[1:] == cond.shape[1:], "train and test conditions differ in shape"
        assert torch.equal(cond, self._load(dataset, split).cond), f"two loads of {split!r} give different conditions"
