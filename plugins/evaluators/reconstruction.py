"""Reconstruction quality on the test split: how much the autoencoder keeps of what it encodes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated

from pydantic import Field

from harness import EvalData, Evaluator, TrainedModel, as_float, hookimpl
from harness.api import checked_options


class ReconstructionEvaluator(Evaluator):
    """``mse``: mean squared error per element between test inputs and the decoder mean of their
    posterior means (images in [0, 1], clipped). ``psnr``: 10·log10(peak² / mse) from that dataset-level MSE,
    with peak 1 for images and the test data's range for vectors."""

    name = "reconstruction"
    metrics = {"mse": "min", "psnr": "max"}

    @checked_options
    def __init__(self, batch_size: Annotated[int, Field(ge=1)] = 500) -> None:
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        squared, count = 0.0, 0
        for x, cond in data.test.batches(self.batch_size):
            target = as_float(x.to(model.device))
            recon = model.decode(model.encode(x, cond).mean, cond)
            squared += float((recon - target).pow(2).sum())
            count += target.numel()
        mse = squared / count
        test = data.test.x
        peak = 1.0 if data.test.is_image else float(test.max() - test.min())
        psnr = 10 * math.log10(peak**2 / mse) if mse > 0 else math.inf
        return {"mse": mse, "psnr": psnr}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(ReconstructionEvaluator)
