"""A multilayer perceptron encoder/decoder for any flat (or flattened) input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

from pydantic import Field
from torch import nn

from harness import Architecture, hookimpl
from harness.api import checked_options


def _stack(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLP(Architecture):
    """``layers`` hidden layers of width ``hidden`` with SiLU, mirrored between encoder and decoder."""

    name = "mlp"

    @checked_options
    def __init__(
        self,
        hidden: Annotated[int, Field(ge=1)] = 256,
        layers: Annotated[int, Field(ge=0, description="0 is a linear encoder and decoder")] = 2,
    ) -> None:
        self.hidden = hidden
        self.layers = layers

    def build(self, data_shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        flat = math.prod(data_shape)
        widths = [self.hidden] * self.layers
        encoder = nn.Sequential(nn.Flatten(), _stack([flat, *widths, 2 * latent_dim]))
        decoder = nn.Sequential(_stack([latent_dim, *widths, flat]), nn.Unflatten(1, data_shape))
        return encoder, decoder


@hookimpl
def harness_register_architectures(register: Callable[[type[Architecture]], None]) -> None:
    register(MLP)
