"""A DCGAN-style convolutional encoder/decoder for 28×28×1, 32×32×3 and 64×64×3 images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import Field
from torch import nn

from harness import Architecture, hookimpl
from harness.api import checked_options

#: (channels, height, width) -> number of stride-2 stages down to a 7×7 or 4×4 feature map.
SUPPORTED = {(1, 28, 28): 2, (3, 32, 32): 3, (3, 64, 64): 4}


class Conv(Architecture):
    """Stride-2 4×4 convolutions (width ``channels``, doubling per stage, at most 8×), a linear layer to
    the latent parameters, and the mirror image with transposed convolutions in the decoder."""

    name = "conv"

    @checked_options
    def __init__(self, channels: Annotated[int, Field(ge=1)] = 32) -> None:
        self.channels = channels

    def incompatibility(self, data_shape: tuple[int, ...]) -> str | None:
        if tuple(data_shape) not in SUPPORTED:
            shapes = ", ".join("×".join(map(str, (h, w, c))) for c, h, w in SUPPORTED)
            return f"architecture 'conv' supports images of {shapes}, not shape {tuple(data_shape)}"
        return None

    def build(self, data_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        channels_in, height, _ = data_shape
        stages = SUPPORTED[tuple(data_shape)]
        widths = [self.channels * min(2**i, 8) for i in range(stages)]
        side = height // 2**stages
        flat = widths[-1] * side * side

        down: list[nn.Module] = []
        for c_in, c_out in zip([channels_in, *widths[:-1]], widths):
            down += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, 2 * latent_dim))

        up: list[nn.Module] = [nn.Linear(latent_dim, flat), nn.Unflatten(1, (widths[-1], side, side))]
        outs = [*reversed(widths[:-1]), channels_in]
        for c_in, c_out in zip(reversed(widths), outs):
            up.append(nn.SiLU())
            up.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        decoder = nn.Sequential(*up)
        return encoder, decoder


@hookimpl
def harness_register_architectures(register: Callable[[type[Architecture]], None]) -> None:
    register(Conv)
