"""Latent usage: how much a decoder's output changes with the code z and with the condition y.

A conditional VAE whose KL term pushes q(z | x, y) onto the prior learns to ignore z: its samples for one input
all look alike (the paper's §6). This puts that in numbers instead of leaving it to a picture:

- ``latent_usage.z``: the root-mean-square change per output value between D(z, y) and D(z', y), two codes drawn
  from the prior for the same test condition y (for an unconditional model, between two prior samples);
- ``latent_usage.y``: the same between D(z, y) and D(z, y'), one code decoded with two different test conditions;
- ``latent_usage``: z / (z + y), the share of the output's variation that the code accounts for (0: z ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import as_float, checked_options


def rms_change(a: Tensor, b: Tensor) -> Tensor:
    """Per row: the root-mean-square difference over every output value, [B]."""
    return (a - b).flatten(1).pow(2).mean(dim=1).sqrt()


class LatentUsageEvaluator(Evaluator):
    """How much decoded samples change with z for one condition (``.z``) and with y for one code (``.y``), and z's share.

    ``pairs`` pairs are decoded, each for its own test condition (cycling), and the RMS changes averaged (see the
    module docstring)."""

    name = "latent_usage"
    metrics = {"": "max", "z": "max", "y": "max"}

    @checked_options
    def __init__(
        self, pairs: Annotated[int, Field(ge=1)] = 500, batch_size: Annotated[int, Field(ge=1)] = 250
    ) -> None:
        self.pairs = pairs
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        with_z, with_y = [], []
        for start in range(0, self.pairs, self.batch_size):
            n = min(self.batch_size, self.pairs - start)
            if model.conditions is None:
                with_z.append(rms_change(model.sample(n), model.sample(n)))
                continue
            y, y_other = model.test_conditions(n, start), model.test_conditions(n, start + n)
            cond = as_float(y.to(model.device))
            z, z_other = model.prior.sample(n, cond), model.prior.sample(n, cond)
            decoded = model.decode(z, y)
            with_z.append(rms_change(decoded, model.decode(z_other, y)))
            with_y.append(rms_change(decoded, model.decode(z, y_other)))
        z_change = float(torch.cat(with_z).mean())
        if not with_y:
            return {"z": z_change}
        y_change = float(torch.cat(with_y).mean())
        share = z_change / (z_change + y_change) if z_change + y_change > 0 else 0.0
        return {"": share, "z": z_change, "y": y_change}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(LatentUsageEvaluator)
