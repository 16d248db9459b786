"""How closely the prior matches the aggregate posterior: the codes the decoder was trained on.

A prior far from the codes makes the decoder turn prior samples it never saw into images, the gap the paper's
learned priors are meant to close.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import checked_options


def mmd_squared(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between samples ``x`` [m, D] and ``y`` [n, D].

    Gaussian kernel exp(-‖a - b‖² / 2σ²) with σ the median distance between distinct points of the pooled sample.
    The unbiased estimate has no 1/n offset, so it centres on 0 for equal distributions (and may dip below).
    Computed in float64: the three kernel means nearly cancel when the fit is good.
    """
    m, n = len(x), len(y)
    pooled = torch.cat([x, y]).double()
    sq_dist = torch.cdist(pooled, pooled).pow(2)
    distinct = torch.ones_like(sq_dist, dtype=torch.bool).triu(diagonal=1)
    # Clamped so that a pool of mostly identical points (a collapsed encoder) gives a finite kernel.
    two_sigma_sq = 2 * sq_dist[distinct].median().clamp_min(torch.finfo(torch.float64).eps)
    kernel = torch.exp(-sq_dist / two_sigma_sq)
    k_xx, k_yy, k_xy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


class PriorFitEvaluator(Evaluator):
    """The test split's codes (posterior means) against the prior.

    ``nll``: mean -log pθ(code) in nats per code, for priors with a density. ``mmd``: ``mmd_squared`` between
    prior samples and a random subset of the codes, ``samples`` on each side (fewer when the test split is
    smaller); for every prior, GANs included. No condition is passed to the prior: conditional priors (none
    exist yet) will need the test labels as conditions.
    """

    name = "prior_fit"
    metrics = {"nll": "min", "mmd": "min"}

    @checked_options
    def __init__(
        self,
        samples: Annotated[int, Field(ge=2, description="the unbiased MMD compares pairs")] = 2000,
        batch_size: Annotated[int, Field(ge=1)] = 1000,
    ) -> None:
        self.samples = samples
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        prior = model.prior
        codes = torch.cat([model.encode(x).mean for x in data.test.x.split(self.batch_size)])
        result: dict[str, float] = {}
        if prior.has_density:
            result["nll"] = -float(torch.cat([prior.log_prob(z) for z in codes.split(self.batch_size)]).mean())
        n = min(self.samples, len(codes))
        subset = codes[torch.randperm(len(codes), device=codes.device)[:n]]
        result["mmd"] = mmd_squared(prior.sample(n), subset)
        return result


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(PriorFitEvaluator)
