"""The VGG19 perceptual reconstruction term the paper's CelebA models add to −log pψ(x|z) (§5.2; Johnson et al.
2016, as in Hou et al. 2017): squared differences of VGG19 ReLU activations of x and of the decoder mean.

Per image and chosen layer l with N_l activations, the term is ``weight · ½ · D · mean((Φ_l(x) − Φ_l(x̂))²)``,
summed over the layers, where D is the number of data dimensions. The mean makes every layer count alike, as in
Johnson et al.; the factor ½·D puts each layer on the scale of the summed pixel NLL (a unit-variance Gaussian over
D values), so ``weight: 1`` is a term of the same order as the pixel term at γ = 1.

The trunk is frozen, never checkpointed (it is reloaded from its weights file) and not part of ψ: it only shapes
the gradient that reaches the decoder and encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from harness.vgg19 import LAYERS, RELU_INDICES, VGG19_TRUNK
from harness.weights import pretrained_weights

#: torchvision's VGG19 ImageNet weights (``VGG19_Weights.IMAGENET1K_V1``); its ``features.*`` tensors are used.
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_trunk(last: int) -> nn.Sequential:
    """VGG19's ``features`` up to and including index ``last``, laid out as torchvision's (same state-dict keys)."""
    modules: list[nn.Module] = []
    channels = 3
    for item in VGG19_TRUNK:
        if len(modules) > last:
            break
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*modules[: last + 1])


class PerceptualLoss(nn.Module):
    """``forward(x, x_hat)`` → the perceptual term per row [B] for images [B, C, H, W] in [0, 1], C ∈ {1, 3}."""

    def __init__(self, layers: Sequence[str], weight: float, trunk_state: Mapping[str, Tensor]) -> None:
        super().__init__()
        unknown = sorted(set(layers) - set(RELU_INDICES))
        if unknown or not layers:
            raise ValueError(f"unknown VGG19 layers {unknown or '(none given)'}; known: {', '.join(LAYERS)}")
        self.taps = sorted({RELU_INDICES[name] for name in layers})
        self.weight = float(weight)
        self.trunk = vgg19_trunk(self.taps[-1])
        wanted = {k: v for k, v in trunk_state.items() if k.startswith("features.")}
        own = {f"features.{k}": v for k, v in self.trunk.state_dict().items()}
        missing = sorted(set(own) - set(wanted), key=lambda k: (int(k.split(".")[1]), k))
        if missing:
            raise ValueError(f"the VGG19 weights lack {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        self.trunk.load_state_dict({k.removeprefix("features."): wanted[k] for k in own})
        self.trunk.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        # The trunk has no dropout or batch norm, but stays in eval mode whatever the model around it does.
        super().train(mode)
        self.trunk.eval()
        return self

    def _features(self, images: Tensor) -> list[Tensor]:
        h = (images.expand(-1, 3, -1, -1) - self.mean) / self.std
        taps, out = set(self.taps), []
        for index, module in enumerate(self.trunk):
            h = module(h)
            if index in taps:
                out.append(h)
        return out

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        with torch.no_grad():
            target = self._features(x)
        dims = x[0].numel()
        term = x_hat.new_zeros(len(x_hat), dtype=torch.float32)
        for want, got in zip(target, self._features(x_hat)):
            # Differences in float32: under bf16 autocast the trunk's activations are bf16.
            term = term + (got.float() - want.float()).pow(2).flatten(1).mean(dim=1)
        return self.weight * 0.5 * dims * term


def check_images(data_shape: tuple[int, ...]) -> None:
    """The perceptual term needs images [C, H, W] with 1 or 3 channels; raise ValueError saying so otherwise."""
    if len(data_shape) != 3 or data_shape[0] not in (1, 3):
        raise ValueError(
            f"model.perceptual needs images with 1 or 3 channels; this dataset's examples have shape {data_shape}"
        )


def perceptual_weights(options: Mapping[str, Any]) -> Path:
    """The VGG19 weights file a cell's ``model.perceptual`` options name (raises PluginUnavailable when missing);
    ``weights_path`` is absent when unset (cell configs leave out None)."""
    return pretrained_weights(
        "VGG19", VGG19_URL, "model.perceptual", options.get("weights_path"), bool(options["download"]),
        alternative=", or remove model.perceptual",
    )  # fmt: skip


def build_perceptual(options: Mapping[str, Any], data_shape: tuple[int, ...]) -> PerceptualLoss:
    """The perceptual term of a cell's ``model.perceptual`` options (as ``PerceptualConfig`` resolved them, defaults
    filled in), with its trunk loaded from the weights file."""
    check_images(data_shape)
    state = torch.load(perceptual_weights(options), map_location="cpu", weights_only=True)
    return PerceptualLoss(options["layers"], float(options["weight"]), state)
