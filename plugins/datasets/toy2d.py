"""Toy 2-D densities from the flow literature: ``moons``, ``eight-gaussians`` and ``rings``.

Small multimodal sets where a prior's fit can be seen by eye. Each is sampled afresh from a fixed seed (train 0,
test 1), so every run sees the same points; labels say which moon, component or ring a point came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.datasets import make_moons

from harness import Dataset, DataSplit, hookimpl
from harness.api import checked_options

_SEEDS = {"train": 0, "test": 1}


class _Toy2D(Dataset):
    """The shared part: split sizes, seeds, and float32 [N, 2] points with int64 class labels."""

    label_names: ClassVar[tuple[str, ...]]

    @checked_options
    def __init__(
        self, n_train: Annotated[int, Field(ge=1)] = 10000, n_test: Annotated[int, Field(ge=1)] = 2000
    ) -> None:
        self.sizes = {"train": n_train, "test": n_test}

    def load(self, split: Literal["train", "test"]) -> DataSplit:
        points, labels = self.sample(self.sizes[split], _SEEDS[split])
        return DataSplit(
            x=torch.as_tensor(points, dtype=torch.float32),
            labels=torch.as_tensor(labels, dtype=torch.int64),
            label_kind="class",
            label_names=self.label_names,
        )

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points [n, 2] and their labels [n], a function of ``seed`` alone."""
        raise NotImplementedError


class Moons(_Toy2D):
    """Two interleaved half circles (scikit-learn's ``make_moons``), centred and scaled as in FFJORD's toy data."""

    name: ClassVar[str] = "moons"
    label_names: ClassVar[tuple[str, ...]] = ("upper", "lower")

    @checked_options
    def __init__(self, n_train: int = 10000, n_test: int = 2000, noise: Annotated[float, Field(ge=0)] = 0.1) -> None:
        super().__init__(n_train, n_test)
        self.noise = noise

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        points, labels = make_moons(n_samples=n, noise=self.noise, random_state=seed)
        # make_moons spans x in [-1, 2], y in [-0.5, 1]; this maps it to about [-3, 3] × [-1.2, 1.8] around 0.
        return points * 2 + np.array([-1.0, -0.2]), labels


class EightGaussians(_Toy2D):
    """Eight isotropic Gaussians evenly spaced on a circle of radius 2, equally weighted.

    FFJORD's variant puts them at radius 2√2 with std ≈ 0.35; radius 2 with ``std: 0.1`` keeps the modes well
    separated, which is what makes mode dropping visible.
    """

    name: ClassVar[str] = "eight-gaussians"
    radius: ClassVar[float] = 2.0
    label_names: ClassVar[tuple[str, ...]] = tuple(f"{45 * k}deg" for k in range(8))

    @checked_options
    def __init__(self, n_train: int = 10000, n_test: int = 2000, std: Annotated[float, Field(ge=0)] = 0.1) -> None:
        super().__init__(n_train, n_test)
        self.std = std

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        angles = 2 * math.pi * np.arange(8) / 8
        centers = self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        labels = rng.integers(0, 8, size=n)
        return centers[labels] + self.std * rng.standard_normal((n, 2)), labels


class Rings(_Toy2D):
    """Four concentric rings of radii 0.5, 1, 1.5 and 2, equally weighted, blurred radially by ``noise``."""

    name: ClassVar[str] = "rings"
    radii: ClassVar[tuple[float, ...]] = (0.5, 1.0, 1.5, 2.0)
    label_names: ClassVar[tuple[str, ...]] = tuple(f"r={r:g}" for r in radii)

    @checked_options
    def __init__(self, n_train: int = 10000, n_test: int = 2000, noise: Annotated[float, Field(ge=0)] = 0.05) -> None:
        super().__init__(n_train, n_test)
        self.noise = noise

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, len(self.radii), size=n)
        angles = rng.uniform(0.0, 2 * math.pi, size=n)
        radii = np.asarray(self.radii)[labels] + self.noise * rng.standard_normal(n)
        return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1), labels


@hookimpl
def harness_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(Moons)
    register(EightGaussians)
    register(Rings)
