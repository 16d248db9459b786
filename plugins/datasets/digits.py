"""``digits``: scikit-learn's 8×8 handwritten digits, the dataset that needs nothing but scikit-learn.

The 1797 images ship inside scikit-learn, so this is the default that runs offline anywhere (tests, CI, a laptop).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from harness import Dataset, DataSplit, hookimpl
from harness.api import checked_options

#: scikit-learn's digits count ink in 0..16 (4×4 blocks of a 32×32 bitmap); images here are 0..255.
_MAX_VALUE = 16


class Digits(Dataset):
    """8×8 digits as uint8 [N, 1, 8, 8], split train/test by a fixed stratified shuffle."""

    name: ClassVar[str] = "digits"
    #: What scikit-learn ships (checked by the tests), known here so that options are checked without loading it.
    images: ClassVar[int] = 1797
    classes: ClassVar[int] = 10

    @checked_options
    def __init__(self, test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2) -> None:
        # The stratified split needs every class on both sides; scikit-learn rounds the test share up.
        n_test = math.ceil(test_fraction * self.images)
        if min(n_test, self.images - n_test) < self.classes:
            raise ValueError(
                f"test_fraction {test_fraction:g} leaves {min(n_test, self.images - n_test)} images in one split; "
                f"the stratified split needs at least {self.classes} (one per class) in each"
            )
        self.test_fraction = test_fraction

    def load(self, split: Literal["train", "test"]) -> DataSplit:
        bunch = load_digits()
        images = np.rint(bunch.images * (255 / _MAX_VALUE)).astype(np.uint8)
        # Stratified with a fixed seed: every class keeps its share in both splits, and every run sees the same split.
        train_idx, test_idx = train_test_split(
            np.arange(len(bunch.target)), test_size=self.test_fraction, stratify=bunch.target, random_state=0
        )
        idx = train_idx if split == "train" else test_idx
        return DataSplit(
            x=torch.from_numpy(images[idx]).unsqueeze(1),
            labels=torch.from_numpy(bunch.target[idx]).long(),
            label_kind="class",
            label_names=tuple(str(name) for name in bunch.target_names),
        )


@hookimpl
def harness_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(Digits)
