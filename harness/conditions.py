"""What a conditional model is conditioned on: a benchmark's ``condition:`` per dataset, made from the data itself.

Written in YAML under a dataset, beside its own options (``datasets: {fashion-mnist: {condition: edges}}``):

- ``edges``: a fixed binary edge map of each image (Sobel gradient magnitude of the grey image above
  ``EDGE_THRESHOLD``). The shape is given, the appearance (fill, texture, shading) is left to the latent code: the
  closest analogue here of the paper's pose → person translation (§6).
- ``{downsample: N}``: an N×N thumbnail (area average), stored at the image's size with each thumbnail pixel a block,
  so super-resolution models see a condition of the image's height and width.
- ``class``: the one-hot class label, float32 [N, K].

A dataset may also provide a condition of its own (``paired-images``: the other half of each pair); without a
``condition:`` it is used as it comes.

``condition`` is the harness's key, not the dataset plugin's: it is taken out before the plugin's options are
validated and the plugin is built, and it is recorded in the cell's ``dataset_options`` only when written, so every
unconditional cell keeps the id it had before conditions existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.api import Dataset, DataSplit
from harness.errors import ConfigError, quote, suggest

#: The key under a dataset that names its condition.
CONDITION_KEY = "condition"
NAMED = ("edges", "class")
#: Sobel magnitude (of images in [0, 1]) above which a pixel is an edge: outlines and strong folds of Fashion-MNIST
#: garments, not their fabric texture.
EDGE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Condition:
    """A parsed ``condition:``: ``kind`` is edges, downsample or class; ``side`` the thumbnail's side."""

    kind: str
    side: int | None = None

    def to_yaml(self) -> Any:
        return {"downsample": self.side} if self.kind == "downsample" else self.kind


def parse_condition(raw: Any, where: str) -> Condition:
    """A ``condition:`` value, or a ConfigError naming the key and the valid forms."""
    forms = "edges, class or {downsample: N}"
    if isinstance(raw, str):
        if raw not in NAMED:
            raise ConfigError(where, f"unknown condition {quote(raw)}{suggest(raw, NAMED)}", f"valid: {forms}")
        return Condition(raw)
    if isinstance(raw, Mapping) and set(raw) == {"downsample"}:
        side = raw["downsample"]
        if not isinstance(side, int) or isinstance(side, bool) or side < 1:
            raise ConfigError(f"{where}.downsample", f"{quote(side)}: the thumbnail's side must be an integer >= 1")
        return Condition("downsample", side)
    raise ConfigError(where, f"{quote(raw)}: not a condition", f"valid: {forms}")


def split_options(options: Mapping[str, Any], where: str) -> tuple[dict[str, Any], Condition | None]:
    """A dataset's YAML options -> (the plugin's own options, the parsed condition or None)."""
    own = {k: v for k, v in options.items() if k != CONDITION_KEY}
    if CONDITION_KEY not in options:
        return own, None
    return own, parse_condition(options[CONDITION_KEY], f"{where}.{CONDITION_KEY}")


def dataset_label(name: str, options: Mapping[str, Any]) -> str:
    """How reports name a cell's data: ``fashion-mnist``, or ``fashion-mnist (edges)`` with a condition."""
    condition = options.get(CONDITION_KEY)
    if condition is None:
        return name
    shown = f"downsample {condition['downsample']}" if isinstance(condition, Mapping) else str(condition)
    return f"{name} ({shown})"


def edge_map(images: Tensor) -> Tensor:
    """Binary Sobel edges of uint8 images [N, C, H, W] -> uint8 [N, 1, H, W] in {0, 255}."""
    grey = images.float().div(255.0).mean(dim=1, keepdim=True)
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.pow(2).sum(dim=1, keepdim=True).sqrt()
    return (magnitude > EDGE_THRESHOLD).to(torch.uint8) * 255


def thumbnail(images: Tensor, side: int) -> Tensor:
    """Area-averaged side×side thumbnails of uint8 images, blown back up (nearest) to the images' size."""
    height, width = images.shape[-2:]
    small = F.adaptive_avg_pool2d(images.float(), side)
    return F.interpolate(small, size=(height, width), mode="nearest").round().clamp(0, 255).to(torch.uint8)


def one_hot_classes(split: DataSplit, dataset: str) -> Tensor:
    if split.labels is None or split.label_kind != "class":
        raise ValueError(f"condition 'class' needs class labels; dataset {dataset!r} has {split.label_kind or 'none'}")
    classes = len(split.label_names) if split.label_names else int(split.labels.max()) + 1
    return F.one_hot(split.labels, classes).float()


def with_condition(split: DataSplit, condition: Condition | None, dataset: str) -> DataSplit:
    """``split`` with ``cond`` set from ``condition`` (None: unchanged, so a dataset's own condition stays)."""
    if condition is None:
        return split
    if condition.kind == "class":
        return replace(split, cond=one_hot_classes(split, dataset))
    if not split.is_image:
        raise ValueError(f"condition {condition.kind!r} needs images; dataset {dataset!r} holds vectors")
    if condition.kind == "edges":
        return replace(split, cond=edge_map(split.x))
    return replace(split, cond=thumbnail(split.x, int(condition.side or 1)))


def load_splits(dataset_cls: type[Dataset], name: str, options: Mapping[str, Any]) -> tuple[DataSplit, DataSplit]:
    """The train and test splits of a dataset as a cell records it (``condition`` included in ``options``)."""
    own, condition = split_options(options, f"datasets.{name}")
    dataset = dataset_cls(**own)
    return tuple(with_condition(dataset.load(s), condition, name) for s in ("train", "test"))  # type: ignore[return-value]


def condition_shape(split: DataSplit) -> tuple[int, ...] | None:
    """The shape of one row's condition, or None for unconditional data."""
    return None if split.cond is None else tuple(split.cond.shape[1:])
