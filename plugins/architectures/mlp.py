"""A multilayer perceptron encoder/decoder for any flat (or flattened) input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from pydantic import Field
import torch
from torch import Tensor, nn

from harness import Architecture, hookimpl
from harness.api import checked_options


def stack(sizes: list[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class ConcatEncoder(nn.Module):
    """q(z | x, y): the MLP over x and y flattened and concatenated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([x.flatten(1), y.flatten(1)], dim=1))


class ConcatDecoder(nn.Module):
    """p(x | y, z): the MLP over z and y flattened, concatenated."""

    def __init__(self, net: nn.Module, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = net
        self.unflatten = nn.Unflatten(1, data_shape)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.unflatten(self.net(torch.cat([z, y.flatten(1)], dim=1)))


class MLP(Architecture):
    """``layers`` hidden layers of width ``hidden`` with SiLU, mirrored between encoder and decoder. With a
    condition y (any shape) both networks also read y, flattened and concatenated to their input."""

    name = "mlp"
    conditional = True
    packable = True

    @checked_options
    def __init__(
        self,
        hidden: Annotated[int, Field(ge=1)] = 256,
        layers: Annotated[int, Field(ge=0, description="0 is a linear encoder and decoder")] = 2,
    ) -> None:
        self.hidden = hidden
        self.layers = layers

    def build(
        self, data_shape: tuple[int, ...], latent_dim: int, condition_shape: tuple[int, ...] | None = None
    ) -> tuple[nn.Module, nn.Module]:
        flat = math.prod(data_shape)
        widths = [self.hidden] * self.layers
        if condition_shape is not None:
            cond = math.prod(condition_shape)
            encoder = ConcatEncoder(stack([flat + cond, *widths, 2 * latent_dim]))
            return encoder, ConcatDecoder(stack([latent_dim + cond, *widths, flat]), tuple(data_shape))
        encoder = nn.Sequential(nn.Flatten(), stack([flat, *widths, 2 * latent_dim]))
        decoder = nn.Sequential(stack([latent_dim, *widths, flat]), nn.Unflatten(1, data_shape))
        return encoder, decoder


@hookimpl
def harness_register_architectures(register: Callable[[type[Architecture]], None]) -> None:
    register(MLP)
