"""A DCGAN-style convolutional encoder/decoder for 28×28×1, 32×32×3 and 64×64×3 images, and its conditional form,
a small Variational U-Net (§6 of the paper) for data with an image condition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from harness import Architecture, hookimpl
from harness.api import checked_options

#: (channels, height, width) -> number of stride-2 stages down to a 7×7 or 4×4 feature map.
SUPPORTED = {(1, 28, 28): 2, (3, 32, 32): 3, (3, 64, 64): 4}


def _down(channels_in: int, widths: list[int]) -> list[nn.Module]:
    """Stride-2 4×4 convolutions (SiLU after each) through ``widths``."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip([channels_in, *widths[:-1]], widths):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
    return layers


class ConditionalEncoder(nn.Module):
    """q(z | x, y): the unconditional encoder's stack over x and y stacked as channels."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([x, y], dim=1))


class VUNetDecoder(nn.Module):
    """p(x | y, z): a U-Net over the condition y with z entering at its bottleneck.

    y goes down ``widths`` stride-2 stages; z is mapped to the bottleneck's grid and stacked with y's features
    there; each transposed convolution up is followed by stacking y's features of that resolution (the skip
    connections), and a 3×3 convolution at full resolution gives the output.
    """

    def __init__(self, cond_channels: int, out_channels: int, widths: list[int], side: int, latent_dim: int) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU())
            for c_in, c_out in zip([cond_channels, *widths[:-1]], widths)
        )
        self.from_z = nn.Sequential(nn.Linear(latent_dim, widths[-1] * side * side), nn.Unflatten(1, (widths[-1], side, side)))
        skip_channels = [cond_channels, *widths[:-1]]  # y's features at each resolution above the bottleneck
        up_widths = [widths[0], *widths[:-1]]  # each transposed convolution's output channels
        self.up = nn.ModuleList()
        channels = 2 * widths[-1]
        for stage in reversed(range(len(widths))):
            self.up.append(nn.ConvTranspose2d(channels, up_widths[stage], 4, stride=2, padding=1))
            channels = up_widths[stage] + skip_channels[stage]
        self.out = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        skips = [y]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        h = torch.cat([self.from_z(z), skips.pop()], dim=1)
        for up in self.up:
            h = torch.cat([self.act(up(h)), skips.pop()], dim=1)
        return self.out(h)


class Conv(Architecture):
    """Stride-2 4×4 convolutions (width ``channels``, doubling per stage, at most 8×), a linear layer to
    the latent parameters, and the mirror image with transposed convolutions in the decoder.

    With an image condition y (of the data's height and width) it is a small Variational U-Net (Esser et al.
    2018): the encoder reads x and y stacked as channels, q(z | x, y); the decoder is a U-Net over y with z at
    the bottleneck, p(x | y, z) (``VUNetDecoder``). How it differs from Esser et al.'s: one latent code at the
    bottleneck instead of one per scale; plain convolutions instead of residual blocks; and the prior p(z | y)
    is the prior plugin's own condition network (θ, fitted by the prior's loss) instead of the U-Net's
    encoder of y shared with the decoder.
    """

    name = "conv"
    conditional = True

    @checked_options
    def __init__(self, channels: Annotated[int, Field(ge=1)] = 32) -> None:
        self.channels = channels

    def incompatibility(self, data_shape: tuple[int, ...]) -> str | None:
        if tuple(data_shape) not in SUPPORTED:
            shapes = ", ".join("×".join(map(str, (h, w, c))) for c, h, w in SUPPORTED)
            return f"architecture 'conv' supports images of {shapes}, not shape {tuple(data_shape)}"
        return None

    def build(
        self, data_shape: tuple[int, ...], latent_dim: int, condition_shape: tuple[int, ...] | None = None
    ) -> tuple[nn.Module, nn.Module]:
        channels_in, height, width = data_shape
        stages = SUPPORTED[tuple(data_shape)]
        widths = [self.channels * min(2**i, 8) for i in range(stages)]
        side = height // 2**stages
        flat = widths[-1] * side * side
        cond_channels = _image_condition_channels(condition_shape, (height, width))

        down = _down(channels_in + cond_channels, widths)
        encoder: nn.Module = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, 2 * latent_dim))
        if condition_shape is not None:
            return ConditionalEncoder(encoder), VUNetDecoder(cond_channels, channels_in, widths, side, latent_dim)

        up: list[nn.Module] = [nn.Linear(latent_dim, flat), nn.Unflatten(1, (widths[-1], side, side))]
        outs = [*reversed(widths[:-1]), channels_in]
        for c_in, c_out in zip(reversed(widths), outs):
            up.append(nn.SiLU())
            up.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        decoder = nn.Sequential(*up)
        return encoder, decoder


def _image_condition_channels(condition_shape: tuple[int, ...] | None, size: tuple[int, int]) -> int:
    """The condition's channels (0 without one); a U-Net needs an image condition of the data's size."""
    if condition_shape is None:
        return 0
    if len(condition_shape) != 3 or tuple(condition_shape[1:]) != size:
        raise ValueError(
            f"architecture 'conv' takes image conditions of the data's size {size[0]}×{size[1]}, not shape "
            f"{tuple(condition_shape)} (use mlp for vector conditions such as condition: class)"
        )
    return condition_shape[0]


@hookimpl
def harness_register_architectures(register: Callable[[type[Architecture]], None]) -> None:
    register(Conv)
